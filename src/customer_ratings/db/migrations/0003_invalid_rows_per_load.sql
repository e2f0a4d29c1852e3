-- A large load's invalid rows (files from 8 MiB on) are streamed into a table of their own,
-- file_invalid_rows__<load_id>, while the file is read, and attached with INHERIT in the load's transaction
-- (docs/adr/0001-atomic-replace.md). There, load_id, source, table_name and file_uri are constant column
-- defaults (kept once, in the catalog) and a CHECK on load_id lets queries for other loads skip the table.
-- Small loads' rows stay in this table. The surrogate id goes: child tables cannot share its identity
-- sequence, and (load_id, record_number) already identifies a row.
ALTER TABLE file_invalid_rows DROP COLUMN id;
COMMENT ON TABLE file_invalid_rows IS
    'One row per rejected data row; a large load''s rows are in its child table file_invalid_rows__<load_id>';
