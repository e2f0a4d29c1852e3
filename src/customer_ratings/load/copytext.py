"""The one serializer of invalid rows into COPY text for file_invalid_rows, and their COPY."""

from __future__ import annotations

import json
from typing import IO

from psycopg import sql

from ..db.server import Connection
from ..validate import InvalidRow, copy_text

LOAD_COLUMNS = ("load_id", "source", "table_name", "file_uri")


ROW_COLUMNS = ("line_number", "record_number", "raw_line", "fields", "errors", "error")


INVALID_COLUMNS = (*LOAD_COLUMNS, *ROW_COLUMNS)


_JSON = json.JSONEncoder(ensure_ascii=False)


def invalidcopy_text(rows: list[InvalidRow], prefix: str) -> bytes:
    """COPY text lines of file_invalid_rows for ``rows`` (``prefix``: the load's columns, if the table has them)."""
    out = []
    encode = _JSON.encode
    lead = prefix + "\t" if prefix else ""
    for row in rows:
        fields = encode(row.fields) if row.fields is not None else None
        errors = encode([e.as_json() for e in row.errors])
        out.append(lead + "\t".join((str(row.line_number), str(row.record_number), copy_text(row.raw),
                                      copy_text(fields), copy_text(errors), copy_text(row.summary))))
    return ("\n".join(out) + "\n").encode("utf-8")


def copy_invalid(conn: Connection, spool: IO[bytes]) -> None:
    """COPY the spooled invalid rows of a small file into file_invalid_rows (nothing if there are none)."""
    if not spool.tell():
        return
    spool.seek(0)
    statement = sql.SQL("COPY file_invalid_rows ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, INVALID_COLUMNS)))
    with conn.cursor().copy(statement) as copy:
        while chunk := spool.read(1 << 20):
            copy.write(chunk)
