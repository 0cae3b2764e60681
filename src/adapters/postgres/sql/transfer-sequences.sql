-- transfer-sequences: the sequences owned by columns of the named tables (serial and identity columns), with their last value.
-- $1 tables text[]: table names in the current schema
-- reply: one row per sequence (table_name, column_name, sequence_name, last_value: text, null when never used)
SELECT c.relname::text AS table_name,
       a.attname::text AS column_name,
       s.oid::regclass::text AS sequence_name,
       pg_sequence_last_value(s.oid)::text AS last_value
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_class c ON c.oid = d.refobjid
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass
  AND d.refclassid = 'pg_class'::regclass
  AND d.deptype IN ('a', 'i')
  AND c.relnamespace = current_schema()::regnamespace
  AND c.relname = ANY ($1::text[])
ORDER BY 1, 2
