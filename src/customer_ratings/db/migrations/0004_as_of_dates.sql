-- Days (SPEC.md "Days"): every load has an as-of date and keeps the report's numbers, committed with its rows,
-- so that the report for any date is read from the history alone. Also: one name per concept ("child" for a
-- load's table under customer_rating, never "partition" or "staging"), status 'missing', the object's ETag, and
-- a COMMENT on every table and column.

ALTER TABLE load_history
    ADD COLUMN as_of_date          DATE,
    ADD COLUMN data_load_id        BIGINT,
    ADD COLUMN sum_customer_rating BIGINT,
    ADD COLUMN high_value_count    BIGINT,
    ADD COLUMN etag                TEXT;

ALTER TABLE load_history DROP CONSTRAINT IF EXISTS load_history_status_check;
ALTER TABLE load_history ADD CONSTRAINT load_history_status_check
    CHECK (status IN ('loaded', 'rejected', 'failed', 'unchanged', 'missing'));

-- Existing loads: the day they ran was their as-of date (the tool had no other notion of a day).
UPDATE load_history SET as_of_date = (started_at AT TIME ZONE current_setting('TimeZone'))::date;

-- A loaded file's data is its own; an unchanged one's is the last load of its agency before it.
UPDATE load_history SET data_load_id = load_id WHERE status = 'loaded';
UPDATE load_history u SET data_load_id = (
    SELECT max(l.load_id) FROM load_history l
    WHERE l.source = u.source AND l.status = 'loaded' AND l.load_id < u.load_id)
WHERE u.status = 'unchanged';

-- The aggregates can be computed only for the loads still current (older loads' rows are gone): the rest
-- keep NULL, and a report for a date whose load has no aggregates says so instead of guessing.
UPDATE load_history h
SET sum_customer_rating = a.rating_sum, high_value_count = a.high_value
FROM (SELECT load_id, coalesce(sum(customer_rating), 0) AS rating_sum,
             count(*) FILTER (WHERE customer_status = 'high-value') AS high_value
      FROM customer_rating GROUP BY load_id) a
WHERE h.load_id = a.load_id;
UPDATE load_history h SET sum_customer_rating = 0, high_value_count = 0
FROM source_current c
WHERE c.load_id = h.load_id AND h.sum_customer_rating IS NULL;

CREATE INDEX load_history_as_of_idx ON load_history (source, as_of_date DESC, load_id DESC);

ALTER TABLE source_current RENAME COLUMN partition TO child_table;
ALTER TABLE source_current ADD COLUMN as_of_date DATE;
UPDATE source_current c SET as_of_date = h.as_of_date FROM load_history h WHERE h.load_id = c.load_id;

-- The tool finds an agency's child tables by their comment: rename the old "staging" comment.
DO $$
DECLARE
    rec record;
BEGIN
    FOR rec IN SELECT c.oid::regclass AS rel, d.description FROM pg_class c
               JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
               WHERE d.description LIKE 'customer_ratings staging for source %' LOOP
        EXECUTE format('COMMENT ON TABLE %s IS %L', rec.rel,
                       'customer_ratings child for source ' || substr(rec.description, 37));
    END LOOP;
END
$$;

COMMENT ON TABLE load_history IS 'One row per file seen (or day without a file): what happened to it and why';
COMMENT ON COLUMN load_history.load_id IS 'The load''s id (also in customer_rating.load_id and file_invalid_rows.load_id)';
COMMENT ON COLUMN load_history.source IS 'The agency (source name in the config, the report''s customer)';
COMMENT ON COLUMN load_history.table_name IS 'The agency''s table';
COMMENT ON COLUMN load_history.file_uri IS 'The file''s URI (file:// or the object''s URL, no credentials); for a missing file, the location searched';
COMMENT ON COLUMN load_history.file_size IS 'Size of the file in bytes, when it could be read';
COMMENT ON COLUMN load_history.sha256 IS 'SHA-256 of the file''s bytes, when it was read to the end';
COMMENT ON COLUMN load_history.status IS 'loaded, rejected (the file as a whole), failed (the database), unchanged (same as the current load), missing (no file for the day)';
COMMENT ON COLUMN load_history.rows_read IS 'Data rows read (as far as reading got, for a rejected file)';
COMMENT ON COLUMN load_history.rows_loaded IS 'Rows loaded (0 unless loaded)';
COMMENT ON COLUMN load_history.rows_invalid IS 'Rows that went to file_invalid_rows under this load';
COMMENT ON COLUMN load_history.error_code IS 'Why a file was rejected (a stable code: errors.RejectReason)';
COMMENT ON COLUMN load_history.error IS 'What went wrong, in one line';
COMMENT ON COLUMN load_history.forced IS 'Loaded with --force (no unchanged check)';
COMMENT ON COLUMN load_history.started_at IS 'When the load started';
COMMENT ON COLUMN load_history.finished_at IS 'When the load finished (committed or gave up)';
COMMENT ON COLUMN load_history.as_of_date IS 'The day the file is for (--date, or the Airflow run''s date); NULL only for history older than as-of dates';
COMMENT ON COLUMN load_history.data_load_id IS 'The load whose rows and numbers this one stands for: itself when loaded, the current load when unchanged';
COMMENT ON COLUMN load_history.sum_customer_rating IS 'The report''s sum_customer_rating for this load (NULL for loads older than as-of dates)';
COMMENT ON COLUMN load_history.high_value_count IS 'The report''s high_value_count for this load (NULL for loads older than as-of dates)';
COMMENT ON COLUMN load_history.etag IS 'The object''s ETag, for a file read from object storage';

COMMENT ON TABLE source_current IS 'Which load each agency''s current data (agency table and customer_rating) comes from';
COMMENT ON COLUMN source_current.source IS 'The agency';
COMMENT ON COLUMN source_current.table_name IS 'The agency''s table';
COMMENT ON COLUMN source_current.load_id IS 'Its current load (the newest snapshot by as-of date)';
COMMENT ON COLUMN source_current.child_table IS 'The child table of customer_rating holding the rows of that load';
COMMENT ON COLUMN source_current.as_of_date IS 'The as-of date of that load';

COMMENT ON COLUMN customer_rating.customer IS 'The agency (source name), as in the report';
COMMENT ON COLUMN customer_rating.customer_number IS 'From the file: the agency''s customer number';
COMMENT ON COLUMN customer_rating.customer_rating IS 'From the file: the rating';
COMMENT ON COLUMN customer_rating.customer_rating_limit IS 'From the file: the rating limit';
COMMENT ON COLUMN customer_rating.customer_status IS 'From the file: the status, trimmed';
COMMENT ON COLUMN customer_rating.load_id IS 'The load the row came from (load_history.load_id)';

COMMENT ON COLUMN file_invalid_rows.load_id IS 'The load the row was rejected in';
COMMENT ON COLUMN file_invalid_rows.source IS 'The agency';
COMMENT ON COLUMN file_invalid_rows.table_name IS 'The agency''s table';
COMMENT ON COLUMN file_invalid_rows.file_uri IS 'The file the row came from';
COMMENT ON COLUMN file_invalid_rows.line_number IS '1-based physical line of the file where the record starts';
COMMENT ON COLUMN file_invalid_rows.record_number IS '1-based data record number (1 = first row after the header)';
COMMENT ON COLUMN file_invalid_rows.raw_line IS 'The record exactly as in the file (undecodable bytes as \xNN)';
COMMENT ON COLUMN file_invalid_rows.fields IS 'The parsed fields keyed by header name (NULL when the record could not be split)';
COMMENT ON COLUMN file_invalid_rows.errors IS 'Every failing column: [{"column", "code", "message"}]';
COMMENT ON COLUMN file_invalid_rows.error IS 'One line for triage: the failing columns and codes, no values (GROUP BY error)';

COMMENT ON TABLE schema_migrations IS 'The migrations applied to this database (customer-ratings applies them itself)';
COMMENT ON COLUMN schema_migrations.version IS 'Migration number';
COMMENT ON COLUMN schema_migrations.name IS 'Migration file name';
COMMENT ON COLUMN schema_migrations.applied_at IS 'When it was applied';
