"""What every input location offers: a one-level listing of :class:`Entry` values and a stream per entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Entry:
    """One name in a location's listing (one level: a sub-folder or sub-prefix is an entry with ``is_dir``)."""

    name: str
    """The last path part: what a source's ``file_pattern`` is matched against."""
    uri: str
    """Where it is, for messages and for ``load_history.file_uri``: ``file:///...`` or ``s3://bucket/key``;
    never a credential."""
    size: int
    """Bytes (0 for a folder, a broken link or anything that is not a regular file)."""
    modified: datetime | None
    """Last modification time (UTC for object stores, local time zone-aware for files)."""
    etag: str | None = None
    """The object's ETag as the store returned it (quotes included); ``None`` for local files."""
    version: str | None = None
    """The object's version id when the store listed one."""
    is_dir: bool = False
    """A sub-folder / sub-prefix: never opened; :func:`Location.open` rejects it."""
    is_symlink: bool = False
    """Local only: the name is a symbolic link (followed when opened)."""
    path: Path | None = None
    """Local only: the file's path."""
    key: str | None = None
    """Object stores only: the object's path relative to the location's prefix (what the store opens)."""

    def __str__(self) -> str:
        """What a message shows: the local path, or the object's URI."""
        return str(self.path) if self.path is not None else self.uri


@runtime_checkable
class Stream(Protocol):
    """A readable byte stream: ``read(n)`` returns at most ``n`` bytes, ``b""`` at the end."""

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes (all the rest for ``n < 0``); ``b""`` at the end."""
        ...

    def close(self) -> None:
        """Release the stream (the connection or the file descriptor)."""
        ...

    def __enter__(self) -> Stream: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class Location(Protocol):
    """A folder or an object-store prefix that holds the agencies' files."""

    @property
    def uri(self) -> str:
        """The location for messages (``/data/in`` or ``s3://bucket/prefix/``), never a credential."""
        ...

    def list(self) -> list[Entry]:
        """The entries directly in the location (one level), sorted by name.

        Raises :class:`~customer_ratings.errors.LocationError` when nothing could be listed.
        """
        ...

    def open(self, entry: Entry) -> Stream:
        """A stream of the entry's bytes, read in blocks (never the whole file at once).

        Raises :class:`~customer_ratings.errors.FileRejected` (``unreadable``) when it cannot be read and
        :class:`~customer_ratings.errors.ObjectChanged` (``file_changed``) when the object is no longer the one
        listed.
        """
        ...
