"""Schema migrations: a database left by an earlier version is upgraded in place, its data intact."""

from __future__ import annotations

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
