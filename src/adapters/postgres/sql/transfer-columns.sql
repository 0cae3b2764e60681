-- transfer-columns: the columns of the named tables (export/import), in each table's column order.
-- $1 tables text[]: table names in the current schema
-- reply: one row per column (table_name, column_name, type: format_type without modifiers, key_position: its place in the primary key, or null)
SELECT c.relname::text AS table_name,
       a.attname::text AS column_name,
       format_type(a.atttypid, NULL) AS type,
       array_position(i.indkey::int2[], a.attnum) AS key_position
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relkind IN ('r', 'p')
  AND c.relname = ANY ($1::text[])
ORDER BY c.relname, a.attnum
