"""Schema migrations: a database left by an earlier version is upgraded in place, its data intact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg

from customer_ratings import Settings, load_source, open_database
from customer_ratings.db.migrate import migrations

from .conftest import AGENCY, assert_consistent, fixture_path

# What version 0001 of the tool left after loading agency_t (load 1) and agency_u (load 2): one partition each.
_V1_PARTITION = """
CREATE TABLE customer_rating__{n} (
    customer TEXT NOT NULL DEFAULT '{agency}' CHECK (customer = '{agency}'), customer_number INTEGER,
    customer_rating INTEGER, customer_rating_limit INTEGER, customer_status VARCHAR(25),
    load_id BIGINT NOT NULL DEFAULT {n});
COMMENT ON TABLE customer_rating__{n} IS 'customer_ratings staging for source {agency}';
INSERT INTO customer_rating__{n} (customer_number, customer_rating, customer_rating_limit, customer_status)
VALUES {rows};
ALTER TABLE customer_rating ATTACH PARTITION customer_rating__{n} FOR VALUES IN ('{agency}');
"""
_V1_DATA = """
INSERT INTO load_history (load_id, source, table_name, file_uri, status, rows_read, rows_loaded, started_at)
VALUES (1, 'agency_t', 'customer_rating_agency_t', 'file:///t.csv', 'loaded', 2, 2, now()),
       (2, 'agency_u', 'customer_rating_agency_u', 'file:///u.csv', 'loaded', 1, 1, now());
""" + _V1_PARTITION.format(n=1, agency="agency_t", rows="(1, 10, 100, 'high-value'), (2, 20, 200, 'low-value')") \
    + _V1_PARTITION.format(n=2, agency="agency_u", rows="(3, 30, 300, 'low-value')") + """
INSERT INTO source_current VALUES ('agency_t', 'customer_rating_agency_t', 1, 'customer_rating__1'),
                                  ('agency_u', 'customer_rating_agency_u', 2, 'customer_rating__2');
INSERT INTO file_invalid_rows (load_id, source, table_name, file_uri, line_number, record_number, raw_line,
                               fields, errors, error)
VALUES (1, 'agency_t', 'customer_rating_agency_t', 'file:///t.csv', 3, 2, 'x,1,1,low-value', '{}',
        '[{"code": "not_an_integer"}]', 'customer_number: not an integer');
SELECT setval(pg_get_serial_sequence('load_history', 'load_id'), 2);
"""


def _children(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'customer_rating'::regclass ORDER BY 1""")]


def test_a_version_1_database_keeps_its_rows_and_loads_after_the_upgrade(database_url: str) -> None:
    version, name, text = migrations()[0]
    assert name == "0001_initial.sql"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        conn.execute(text.encode())
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        conn.execute(_V1_DATA.encode())

    with open_database(Settings(database_url=database_url)) as db:
        conn = db.connection()
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'customer_rating'").fetchone() == ("r",)
        assert _children(conn) == ["customer_rating__1", "customer_rating__2"]
        rows = conn.execute("SELECT customer, customer_number, load_id FROM customer_rating ORDER BY 2").fetchall()
        assert rows == [("agency_t", 1, 1), ("agency_t", 2, 1), ("agency_u", 3, 2)]
        assert conn.execute("SELECT load_id, line_number, raw_line FROM file_invalid_rows").fetchall() == [
            (1, 3, "x,1,1,low-value")]
        assert conn.execute("""SELECT count(*) FROM information_schema.columns
                               WHERE table_name = 'file_invalid_rows' AND column_name = 'id'""").fetchone() == (0,)

        result = load_source(db, AGENCY, fixture_path("valid_lf"))
        assert result.status == "loaded"
        assert_consistent(db, AGENCY, result)
        assert _children(conn) == ["customer_rating__2", f"customer_rating__{result.load_id}"]
        assert conn.execute("SELECT count(*) FROM customer_rating WHERE customer = 'agency_u'").fetchone() == (1,)


def test_every_migration_file_is_applied_once_in_order(db: object, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert applied == [name for _, name, _ in migrations()]
    assert [p.name for p in sorted(Path(migrations.__code__.co_filename).parent.glob("migrations/*.sql"))] == applied


# What versions 0002-0004 left (each row twice): the agency table holds its rows, and a child of
# customer_rating (the four columns, customer and load_id as constants) holds them again.
_V4_DATA = """
CREATE TABLE customer_rating_agency_t (customer_number INTEGER, customer_rating INTEGER,
                                       customer_rating_limit INTEGER, customer_status VARCHAR(25));
INSERT INTO customer_rating_agency_t VALUES (1, 10, 100, 'high-value'), (2, 20, 200, 'low-value');
CREATE TABLE customer_rating__1 (customer_number INTEGER, customer_rating INTEGER,
                                 customer_rating_limit INTEGER, customer_status VARCHAR(25));
INSERT INTO customer_rating__1 VALUES (1, 10, 100, 'high-value'), (2, 20, 200, 'low-value');
ALTER TABLE customer_rating__1 ADD COLUMN customer TEXT NOT NULL DEFAULT 'agency_t',
                               ADD COLUMN load_id BIGINT NOT NULL DEFAULT 1;
COMMENT ON TABLE customer_rating__1 IS 'customer_ratings child for source agency_t';
ALTER TABLE customer_rating__1 INHERIT customer_rating;
CREATE VIEW agency_t_high AS SELECT * FROM customer_rating_agency_t WHERE customer_status = 'high-value';
INSERT INTO load_history (load_id, source, table_name, file_uri, status, rows_read, rows_loaded, started_at,
                          as_of_date, data_load_id, sum_customer_rating, high_value_count)
VALUES (1, 'agency_t', 'customer_rating_agency_t', 'file:///t.csv', 'loaded', 2, 2, now(), '2025-01-01', 1, 30, 1);
INSERT INTO source_current (source, table_name, load_id, child_table, as_of_date)
VALUES ('agency_t', 'customer_rating_agency_t', 1, 'customer_rating__1', '2025-01-01');
SELECT setval(pg_get_serial_sequence('load_history', 'load_id'), 1);
"""


def test_a_version_4_database_stores_each_row_once_after_the_upgrade(database_url: str) -> None:
    """0005: the agency table's own copy is emptied and the current child becomes its child too; a user's view
    on the agency table reads the same rows, and the next load replaces them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        for version, name, text in migrations():
            if version <= 4:
                conn.execute(text.encode())
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        conn.execute(_V4_DATA.encode())

    with open_database(Settings(database_url=database_url)) as db:
        conn = db.connection()
        assert conn.execute("SELECT count(*) FROM ONLY customer_rating_agency_t").fetchone() == (0,)
        assert conn.execute("SELECT customer_number FROM customer_rating_agency_t ORDER BY 1").fetchall() == [
            (1,), (2,)]
        assert conn.execute("SELECT customer_number FROM agency_t_high").fetchall() == [(1,)]
        assert conn.execute("SELECT customer, load_id, count(*) FROM customer_rating GROUP BY 1, 2").fetchall() == [
            ("agency_t", 1, 2)]
        parents = conn.execute("""SELECT inhparent::regclass::text FROM pg_inherits
                                  WHERE inhrelid = 'customer_rating__1'::regclass ORDER BY 1""").fetchall()
        assert parents == [("customer_rating",), ("customer_rating_agency_t",)]

        source = replace(AGENCY, name="agency_t", table="customer_rating_agency_t")
        result = load_source(db, source, fixture_path("valid_lf"))
        assert result.status == "loaded"
        assert_consistent(db, source, result)
        assert conn.execute("SELECT count(*) FROM ONLY customer_rating_agency_t").fetchone() == (0,)
        assert conn.execute("SELECT to_regclass('customer_rating__1')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM agency_t_high").fetchone() == conn.execute(
            "SELECT count(*) FROM customer_rating WHERE customer = 'agency_t' AND customer_status = 'high-value'"
        ).fetchone()
