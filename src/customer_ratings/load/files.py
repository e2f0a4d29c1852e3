"""Opening an agency's file (a local path, checked, or an object opened at its first read) and the unchanged check."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from types import TracebackType

from ..config import Source
from ..db.server import Connection
from ..inputs import Entry, Location, Stream, open_regular


def open_entry(entry: Entry, location: Location | None, follow_symlinks: bool) -> Stream:
    """A local entry's file (checked by ``inputs.open_regular``), or an object opened at its first read."""
    if entry.path is not None:
        return open_regular(entry.path, follow_symlinks)
    if location is None:
        raise ValueError(f"load_source of {entry.uri} needs the location it was listed in")
    where = location
    return _Deferred(lambda: where.open(entry))


class _Deferred:
    """An object opened (its first GET made) at the first read: an unchanged object, known by its listed size
    and ETag, is never fetched."""

    def __init__(self, open_stream: Callable[[], Stream]) -> None:
        self._open = open_stream
        self._stream: Stream | None = None

    def read(self, n: int = -1, /) -> bytes:
        if self._stream is None:
            self._stream = self._open()
        return self._stream.read(n)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> _Deferred:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def unchanged_sha(conn: Connection, source: Source, fh: Stream, size: int, etag: str | None = None) -> str | None:
    """The file's sha256 when it equals the agency's current load; hashed only when the sizes agree.

    An object (``etag`` from its listing) is the current load's when its size and ETag are: nothing is read.
    """
    row = conn.execute(
        """SELECT h.sha256, h.file_size, h.etag FROM source_current c JOIN load_history h USING (load_id)
           WHERE c.source = %s""",
        (source.name,),
    ).fetchone()
    if row is None or row[1] != size:
        return None
    if etag is not None or not isinstance(fh, io.IOBase):  # multipart ETags are no digests: equality only
        return str(row[0]) if etag is not None and row[2] == etag and row[0] is not None else None
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    fh.seek(0)
    return digest.hexdigest() if digest.hexdigest() == row[0] else None
