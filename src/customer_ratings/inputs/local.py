"""A local folder as an input location: ``os.scandir`` one level, files opened only when they are regular."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from ..errors import FileRejected, LocationError, RejectReason
from .base import Entry


class LocalFolder:
    """The files directly in one local folder (its sub-folders are listed as ``is_dir`` entries, not entered)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    @property
    def uri(self) -> str:
        """The folder as given, for messages."""
        return str(self.folder)

    def list(self) -> list[Entry]:
        """Entries sorted by name; a broken link or a link loop is listed as a file of size 0 (its load says)."""
        if not self.folder.is_dir():
            raise LocationError(f"data folder {self.folder} does not exist or is not a folder: check --data-dir")
        try:
            with os.scandir(self.folder) as it:
                entries = [self._entry(de) for de in it]
        except OSError as exc:
            raise LocationError(f"data folder {self.folder} cannot be listed: {exc.strerror}") from None
        return sorted(entries, key=lambda e: e.name)

    def _entry(self, de: os.DirEntry[str]) -> Entry:
        path = Path(de.path)
        try:
            is_symlink = de.is_symlink()
        except OSError:
            is_symlink = False
        try:
            st = de.stat()  # follows links
        except OSError:  # a broken link or a loop: not a folder, nothing to stat
            return Entry(de.name, path.absolute().as_uri(), 0, None, is_symlink=is_symlink, path=path)
        is_dir = stat.S_ISDIR(st.st_mode)
        size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        modified = datetime.fromtimestamp(st.st_mtime).astimezone()
        return Entry(de.name, path.absolute().as_uri(), size, modified, is_dir=is_dir, is_symlink=is_symlink,
                     path=path)

    def open(self, entry: Entry) -> BinaryIO:
        """The entry's file opened for reading, after checking it is a regular file (see :func:`open_regular`)."""
        return open_regular(entry.path if entry.path is not None else self.folder / entry.name)


def open_regular(path: Path, follow_symlinks: bool = True) -> BinaryIO:
    """Open ``path`` for binary reading when it is a regular file; otherwise ``FileRejected(unreadable)``.

    Stats before opening, because opening a FIFO named like a data file would block until someone writes to
    it, and checks the opened descriptor again (the name may have been replaced in between). Without
    ``follow_symlinks``, a file that is really outside ``path``'s folder (a symlink an agency planted to, say,
    /etc/shadow) is refused, checked on the opened descriptor so that a link swapped in meanwhile cannot slip
    through.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            if path.is_dir():
                raise FileRejected(RejectReason.UNREADABLE, "is a directory, not a file")
            raise FileRejected(RejectReason.UNREADABLE, "is not a regular file (a pipe or device?)")
        fh = open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block
    except IsADirectoryError:
        raise FileRejected(RejectReason.UNREADABLE, "is a directory, not a file") from None
    except OSError as exc:
        raise FileRejected(RejectReason.UNREADABLE, f"cannot be opened: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise FileRejected(RejectReason.UNREADABLE, "is not a regular file (a pipe or device?)")
    if not follow_symlinks and not _inside(_opened_path(fh, path), os.path.realpath(path.parent)):
        fh.close()
        raise FileRejected(RejectReason.UNREADABLE,
                           "is a symlink to outside the data folder; set follow_symlinks = true to allow it")
    return fh


def _opened_path(fh: BinaryIO, path: Path) -> str:
    """The real path of the file ``fh`` opened; without /proc, the resolved ``path``."""
    try:
        real = os.readlink(f"/proc/self/fd/{fh.fileno()}")
    except OSError:
        return os.path.realpath(path)
    return real.removesuffix(" (deleted)")


def _inside(real: str, folder: str) -> bool:
    return os.path.commonpath([real, folder]) == folder
