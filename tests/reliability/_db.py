"""Read-side helpers for the reliability tests: what the database holds, as plain Python values."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

Row = tuple[int, int, int, str]


def url_for(server_url: str, dbname: str) -> str:
    params = pg_conninfo.conninfo_to_dict(server_url)
    params["dbname"] = dbname
    return pg_conninfo.make_conninfo("", **params)


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def agency_rows(conn: psycopg.Connection[Any], table: str) -> Counter[Row]:
    rows = conn.execute(sql.SQL(
        "SELECT customer_number, customer_rating, customer_rating_limit, customer_status FROM {}"
    ).format(sql.Identifier(table))).fetchall()
    return Counter(rows)


def consolidated_rows(conn: psycopg.Connection[Any], source: str) -> tuple[Counter[Row], set[int]]:
    """The agency's slice of customer_rating, and the load ids it carries."""
    rows = conn.execute(
        """SELECT customer_number, customer_rating, customer_rating_limit, customer_status, load_id
           FROM customer_rating WHERE customer = %s""", (source,)).fetchall()
    return Counter(r[:4] for r in rows), {r[4] for r in rows}


def current_load(conn: psycopg.Connection[Any], source: str) -> int | None:
    row = conn.execute("SELECT load_id FROM source_current WHERE source = %s", (source,)).fetchone()
    return None if row is None else int(row[0])


def history(conn: psycopg.Connection[Any], load_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM load_history WHERE load_id = %s", (load_id,))
    row = cur.fetchone()
    assert row is not None, f"no load_history row for load {load_id}"
    assert cur.description is not None
    return {d.name: v for d, v in zip(cur.description, row, strict=True)}


def invalid_rows(conn: psycopg.Connection[Any], load_id: int) -> list[dict[str, Any]]:
    cur = conn.execute(
        """SELECT line_number, record_number, raw_line, fields, errors, error, source, table_name, file_uri
           FROM file_invalid_rows WHERE load_id = %s ORDER BY record_number""", (load_id,))
    assert cur.description is not None
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


FINGERPRINT = """SELECT count(*), coalesce(sum(customer_number::bigint), 0), coalesce(sum(customer_rating::bigint), 0),
                        coalesce(sum(customer_rating_limit::bigint), 0),
                        count(*) FILTER (WHERE customer_status = 'high-value')
                 FROM {}"""


def fingerprint(conn: psycopg.Connection[Any], table: str) -> tuple[int, ...]:
    """(rows, sum number, sum rating, sum limit, high-value count) of an agency table."""
    row = conn.execute(sql.SQL(FINGERPRINT).format(sql.Identifier(table))).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def partition_fingerprint(conn: psycopg.Connection[Any], source: str) -> tuple[int, ...]:
    row = conn.execute(sql.SQL(FINGERPRINT + " WHERE customer = %s").format(sql.Identifier("customer_rating")),
                       (source,)).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def stage_tables(conn: psycopg.Connection[Any]) -> tuple[set[str], set[str]]:
    """(every customer_rating__* and file_invalid_rows__* table, those attached to their parent)."""
    every = {r[0] for r in conn.execute(
        """SELECT relname FROM pg_class WHERE relkind = 'r'
           AND (relname LIKE 'customer\\_rating\\_\\_%' OR relname LIKE 'file\\_invalid\\_rows\\_\\_%')""")}
    attached = {r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent IN ('customer_rating'::regclass, 'file_invalid_rows'::regclass)""")}
    return every, attached
