"""The output seam: report and reconciliation files written whole and atomically, to a folder or a bucket.

- Local folder: a temporary file in the same folder, written, fsync'ed, renamed over the target with
  ``os.replace`` and the folder fsync'ed: a reader sees the previous file or the new one, never a part.
- Object storage (``s3://``, ``gs://``, ``az://``): one PUT per file, which the store makes atomic.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import uuid
from pathlib import Path

from .errors import LocationError, OutputError
from .inputs.objectstore import ObjectStoreLocation, is_url


def _local_folder(location: str | Path) -> Path:
    if isinstance(location, str) and location.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(location).path))
    return Path(location)


def _is_object_store(location: str | Path) -> bool:
    return isinstance(location, str) and is_url(location) and not location.startswith("file://")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full: free some space and run again"
    if exc.errno == errno.EDQUOT:
        return "the disk quota is exceeded: free some space and run again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: check the folder's owner and mode"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return exc.strerror or type(exc).__name__


def write_atomic(location: str | Path, name: str, data: bytes) -> str:
    """Write ``data`` as ``name`` in ``location`` atomically; return where it went (a path or ``s3://bucket/key``).

    On failure raises :class:`OutputError`; the previous file, if any, is intact and no temporary file is left.
    """
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"not a file name: {name!r}")
    if _is_object_store(location):
        store = ObjectStoreLocation(str(location))
        try:
            return store.put(name, data)
        except LocationError as exc:
            raise OutputError(str(exc)) from None
    folder = _local_folder(location)
    target = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"output folder {folder} cannot be created: {_reason(exc)}") from None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write in output folder {folder}: {_reason(exc)}") from None
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a report is as readable as any new file
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise OutputError(f"cannot write {target}: {_reason(exc)}; the previous file is intact") from None
    _fsync_folder(folder)
    return str(target)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: some file systems refuse to fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(location: str | Path) -> None:
    """Raise :class:`OutputError` unless files can be written to ``location``; called before loading anything.

    Local: the folder exists or can be created, and a temporary file can be written and removed there.
    Object storage: a small marker object can be PUT and deleted under the prefix (so the bucket exists, is
    reachable, and the credentials may write).
    """
    marker = f".customer-ratings-write-check-{uuid.uuid4().hex}"
    if _is_object_store(location):
        store = ObjectStoreLocation(str(location))
        try:
            store.put(marker, b"")
        except LocationError as exc:
            raise OutputError(f"output location is not writable: {exc}") from None
        with contextlib.suppress(LocationError):  # written is what counts; a write-only role may not delete
            store.delete(marker)
        return
    folder = _local_folder(location)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {folder} is not a folder: check --output-dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"output folder {folder} is not writable: {_reason(exc)}") from None
    tmp_name: str | None = None
    try:
        # An anonymous file where the system has them: nothing with a name is ever left, even by a kill -9.
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600) if hasattr(os, "O_TMPFILE") else -1
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise OutputError(f"output folder {folder} is not writable: {_reason(exc)}") from None
        fd = -1
    try:
        if fd < 0:
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=marker, suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"output folder {folder} is not writable: {_reason(exc)}") from None
    try:
        os.write(fd, b"x")
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"output folder {folder} is not writable: {_reason(exc)}") from None
    finally:
        os.close(fd)
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
