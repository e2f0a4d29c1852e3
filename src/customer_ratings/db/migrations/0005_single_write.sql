-- Each row stored once (SPEC.md "Database", docs/adr/0005-single-write.md): a load's child tables inherit from
-- both the agency's table and customer_rating, and the agency table itself holds no rows. Until now the agency
-- table held a second copy of its current rows; here each agency's current child (the copy in customer_rating)
-- also becomes a child of the agency table, and the agency table's own copy is emptied.
DO $migration$
DECLARE
    cur record;
    child text;
BEGIN
    FOR cur IN
        SELECT c.source, c.table_name, c.load_id, c.child_table
        FROM source_current c
        WHERE to_regclass(quote_ident(c.table_name)) IS NOT NULL
    LOOP
        child := cur.child_table;
        IF child IS NULL OR to_regclass(quote_ident(child)) IS NULL THEN
            -- No child in customer_rating (a database of the very first layout): make one from the agency
            -- table's own rows, in the shape a load makes.
            child := 'customer_rating__' || cur.load_id;
            EXECUTE format('CREATE TABLE %I AS SELECT customer_number, customer_rating, customer_rating_limit,
                                   customer_status FROM ONLY %I', child, cur.table_name);
            EXECUTE format('ALTER TABLE %I ADD COLUMN customer TEXT NOT NULL DEFAULT %L,
                                        ADD COLUMN load_id BIGINT NOT NULL DEFAULT %s',
                           child, cur.source, cur.load_id);
            EXECUTE format('COMMENT ON TABLE %I IS %L', child, 'customer_ratings child for source ' || cur.source);
            EXECUTE format('ALTER TABLE %I INHERIT customer_rating', child);
            UPDATE source_current SET child_table = child WHERE source = cur.source;
        END IF;
        EXECUTE format('TRUNCATE ONLY %I', cur.table_name);
        IF NOT EXISTS (SELECT FROM pg_inherits
                       WHERE inhrelid = to_regclass(quote_ident(child))
                         AND inhparent = to_regclass(quote_ident(cur.table_name))) THEN
            EXECUTE format('ALTER TABLE %I INHERIT %I', child, cur.table_name);
        END IF;
    END LOOP;
END
$migration$;

COMMENT ON COLUMN source_current.child_table IS
    'The child tables holding the rows of that load (comma-separated when a large file was split across '
    'parallel streams); each inherits from both the agency table and customer_rating';
COMMENT ON TABLE customer_rating IS
    'Every agency''s current rows: the parent of each current load''s child tables (which are also children of '
    'the agency''s own table, so each row is stored once); customer and load_id are constants of each child';
