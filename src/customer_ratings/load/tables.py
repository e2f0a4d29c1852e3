"""A load's tables: its child tables (created, completed, swapped in), its invalid rows' table, orphans."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ..config import Source
from ..db.migrate import AGENCY_TABLE_DDL, MIGRATION_LOCK_KEY
from ..db.server import Connection, Database
from .context import AGENCY_LOCK_NAMESPACE, CHILD_COMMENT, INVALID_COMMENT
from .locks import LOCK_WAIT_DEFAULT_S, with_lock_wait

log = logging.getLogger(__name__)


# A leftover table still read by an old transaction is left for a later load rather than waited for.
ORPHAN_LOCK_WAIT = "200ms"


def ensure_table(conn: Connection, source: Source) -> None:
    """Create the agency's table if `init` or the start of the run did not (e.g. a library caller)."""
    if conn.execute("SELECT to_regclass(%s)", (sql.Identifier(source.table).as_string(conn),)).fetchone() != (None,):
        return
    # The lock `init` takes too (session-level, so that it is not held for the whole load).
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(AGENCY_TABLE_DDL.format(sql.Identifier(source.table)))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def _tables_of(conn: Connection, source: Source, comments: tuple[str, ...], *, attached: bool) -> list[str]:
    """The agency's tables carrying one of ``comments`` (+ source name), attached by inheritance or not."""
    return [r[0] for r in conn.execute(
        sql.SQL(
            """SELECT c.relname FROM pg_class c
               JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
               WHERE c.relkind = 'r' AND d.description = ANY(%s) AND c.relnamespace = current_schema()::regnamespace
                 AND {} EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid)"""
        ).format(sql.SQL("" if attached else "NOT")),
        ([comment + source.name for comment in comments],),
    )]


def drop_orphans(conn: Connection, source: Source) -> None:
    """Drop the tables a killed or rejected load of this agency left behind (never attached, never visible).

    A replaced slice a reader still holds (its transaction began before the swap) is left for a later load:
    each drop waits at most ORPHAN_LOCK_WAIT for its lock.
    """
    for name in _tables_of(conn, source, (CHILD_COMMENT, INVALID_COMMENT), attached=False):
        _drop_orphan(conn, name)


def _drop_orphan(conn: Connection, name: str) -> None:
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(ORPHAN_LOCK_WAIT)))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute("SET LOCAL lock_timeout TO DEFAULT")
    except psycopg.errors.LockNotAvailable:
        log.info("%s is still read by an older transaction; a later load drops it", name)


def _comment(conn: Connection, table: str, text: str) -> None:
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(text)))


def _add_constants(conn: Connection, table: str, columns: list[tuple[str, str, object]]) -> None:
    """Add NOT NULL columns with constant defaults: kept once in the catalog, not in the rows (no rewrite)."""
    conn.execute(sql.SQL("ALTER TABLE {} {}").format(sql.Identifier(table), sql.SQL(", ").join(
        sql.SQL("ADD COLUMN {} {} NOT NULL DEFAULT {}").format(sql.Identifier(name), sql.SQL(kind), sql.Literal(v))
        for name, kind, v in columns)))


def create_child(conn: Connection, source: Source, child: str) -> None:
    """A new child of the agency, in the agency table's shape and tablespace (``finish_child`` completes it)."""
    conn.execute(AGENCY_TABLE_DDL.format(sql.Identifier(child)) + _tablespace_of(conn, source.table))
    _comment(conn, child, CHILD_COMMENT + source.name)


def _tablespace_of(conn: Connection, table: str) -> sql.Composable:
    """`` TABLESPACE x`` when a DBA moved the agency table out of the default tablespace: its rows go there."""
    row = conn.execute(
        """SELECT t.spcname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
           WHERE c.oid = to_regclass(%s)""", (sql.Identifier(table).as_string(conn),)).fetchone()
    return sql.SQL("") if row is None else sql.SQL(" TABLESPACE {}").format(sql.Identifier(row[0]))


def finish_child(conn: Connection, source: Source, child: str, load_id: int, *,
                 analyze: bool = True) -> tuple[int, int]:
    """customer_rating's own columns as constants, and (``analyze``) statistics for the planner (the parents'
    estimates include their children's). Returns the report's numbers of its rows (sum of customer_rating,
    high-value count), computed once by the server and kept in the history row."""
    _add_constants(conn, child, [("customer", "TEXT", source.name), ("load_id", "BIGINT", load_id)])
    if analyze:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(child)))
    row = conn.execute(sql.SQL(
        """SELECT coalesce(sum(customer_rating), 0), count(*) FILTER (WHERE customer_status = 'high-value')
           FROM {}""").format(sql.Identifier(child))).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def create_invalid_child(conn: Connection, source: Source, child: str) -> None:
    """A large load's own table of invalid rows; ``finish_invalid_child`` makes it file_invalid_rows' shape."""
    conn.execute(sql.SQL(
        """CREATE TABLE {} (line_number BIGINT NOT NULL, record_number BIGINT NOT NULL, raw_line TEXT NOT NULL,
                            fields JSONB, errors JSONB NOT NULL, error TEXT NOT NULL)"""
    ).format(sql.Identifier(child)))
    _comment(conn, child, INVALID_COMMENT + source.name)


def finish_invalid_child(conn: Connection, source: Source, child: str, load_id: int, uri: str) -> None:
    """The load's columns as constants, and a CHECK on load_id so that queries for other loads skip it."""
    _add_constants(conn, child, [("load_id", "BIGINT", load_id), ("source", "TEXT", source.name),
                                 ("table_name", "TEXT", source.table), ("file_uri", "TEXT", uri)])
    conn.execute(sql.SQL("ALTER TABLE {} ADD CHECK (load_id = {})").format(
        sql.Identifier(child), sql.Literal(load_id)))


def swap_children(conn: Connection, source: Source, children: list[str], invalid_child: str | None,
          lock_wait: float = LOCK_WAIT_DEFAULT_S) -> list[str]:
    """Replace the agency's rows: detach its current children from both parents, attach the new ones to both.

    Catalog work only, milliseconds, in the load's transaction: readers see the old children or the new ones.
    The only locks a reader can hold against it are on the replaced children (every reader of the agency
    table or of customer_rating takes them); the parents are taken in SHARE UPDATE EXCLUSIVE mode, which
    readers never wait for, and always customer_rating first, so that two swaps queue instead of deadlocking.
    Returns the replaced children; they are dropped after the commit (``drop_replaced``).
    """
    old = _tables_of(conn, source, (CHILD_COMMENT,), attached=True)
    parents = ["customer_rating", source.table]

    def swap() -> None:
        for name in old:
            for parent in _parents_of(conn, name):
                conn.execute(sql.SQL("ALTER TABLE {} NO INHERIT {}").format(sql.Identifier(name),
                                                                            sql.Identifier(parent)))
        for name in children:
            for parent in parents:
                conn.execute(sql.SQL("ALTER TABLE {} INHERIT {}").format(sql.Identifier(name),
                                                                         sql.Identifier(parent)))
        if invalid_child is not None:
            attach_invalid(conn, invalid_child)

    with_lock_wait(conn, [*parents, "file_invalid_rows", *old], lock_wait, swap)
    return old


def _parents_of(conn: Connection, table: str) -> list[str]:
    """The tables ``table`` inherits from, customer_rating first (the order every swap locks them in)."""
    return [r[0] for r in conn.execute(
        """SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
           WHERE i.inhrelid = %s::regclass ORDER BY p.relname <> 'customer_rating', p.relname""",
        (sql.Identifier(table).as_string(conn),))]


def attach_invalid(conn: Connection, invalid_child: str) -> None:
    """Make a large load's own table of invalid rows a child of file_invalid_rows."""
    conn.execute(sql.SQL("ALTER TABLE {} INHERIT file_invalid_rows").format(sql.Identifier(invalid_child)))


def drop_replaced(db: Database, names: list[str]) -> None:
    """Drop the slices a committed load replaced. Best effort: a slice left behind (the connection was lost,
    the process killed, a reader whose transaction predates the swap still holds it) is a detached orphan,
    dropped by the agency's next load."""
    try:
        conn = db.connection()
        for name in names:
            _drop_orphan(conn, name)
    except psycopg.Error as exc:
        log.warning("could not drop the replaced tables %s (the next load will): %s", names, exc)
        db.discard_connection()


def cleanup(db: Database, source: Source) -> None:
    """Best effort, after a rejected or failed load: drop the tables its helper connections committed. Skipped
    if another run is loading this agency (its tables look the same; the next load cleans up either way)."""
    try:
        conn = db.connection()
        with conn.transaction():
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                               (AGENCY_LOCK_NAMESPACE, source.name)).fetchone()
            if row is not None and row[0]:
                drop_orphans(conn, source)
    except psycopg.Error as exc:
        log.warning("could not drop the unused tables of %s's load: %s", source.name, exc)
        db.discard_connection()
