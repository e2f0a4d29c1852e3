-- customer_rating becomes a plain parent table whose per-agency slices are attached with INHERIT instead of
-- ATTACH PARTITION (docs/adr/0001-atomic-replace.md). A slice is filled through the agency table's four
-- columns only; `customer` and `load_id` are then added as constant column defaults, which PostgreSQL keeps
-- in the catalog (no per-row storage, no rewrite). ATTACH PARTITION would need those values stored in every
-- row, or a scan to prove them: about a second per 10 million rows, inside the load.
ALTER TABLE customer_rating RENAME TO customer_rating_partitioned_0001;

CREATE TABLE customer_rating (
    customer              TEXT    NOT NULL,
    customer_number       INTEGER,
    customer_rating       INTEGER,
    customer_rating_limit INTEGER,
    customer_status       VARCHAR(25),
    load_id               BIGINT  NOT NULL
);
COMMENT ON TABLE customer_rating IS
    'Every agency''s current rows: one child table (customer_rating__<load_id>) per agency, swapped by its load';

DO $$
DECLARE
    slice regclass;
BEGIN
    FOR slice IN SELECT inhrelid::regclass FROM pg_inherits
                 WHERE inhparent = 'customer_rating_partitioned_0001'::regclass LOOP
        EXECUTE format('ALTER TABLE customer_rating_partitioned_0001 DETACH PARTITION %s', slice);
        EXECUTE format('ALTER TABLE %s INHERIT customer_rating', slice);
    END LOOP;
END
$$;

DROP TABLE customer_rating_partitioned_0001;
