-- transfer-snapshot: opens an export's transaction as one consistent, read-only snapshot, with fixed text forms for the values whose text depends on settings (so the same rows always export as the same bytes).
-- reply: none (a script: run with exec, first in its transaction)
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SET LOCAL TimeZone = 'UTC';
SET LOCAL DateStyle = 'ISO, YMD';
SET LOCAL IntervalStyle = 'iso_8601';
SET LOCAL extra_float_digits = 3;
SET LOCAL bytea_output = 'hex'
