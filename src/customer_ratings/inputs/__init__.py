"""The input seam: a data location (a local folder or an object-store prefix), listed one level and streamed.

Usage::

    location = open_location("/data/in")            # or "s3://bucket/prefix/", "gs://...", "az://..."
    for entry in location.list():                   # one level; entry.name is the last path part
        with location.open(entry) as stream:        # stream.read(1 << 20) -> bytes, b"" at the end
            ...
"""

from __future__ import annotations

from pathlib import Path

from .base import Entry, Location, Stream
from .local import LocalFolder, open_regular
from .objectstore import ObjectReader, ObjectStoreLocation, is_url

__all__ = ["Entry", "LocalFolder", "Location", "ObjectReader", "ObjectStoreLocation", "Stream", "is_url",
           "open_location", "open_regular"]


def open_location(text: str | Path) -> Location:
    """The location named by ``text``: a local folder (a path or ``file://`` URL) or ``s3://``/``gs://``/``az://``.

    Raises :class:`~customer_ratings.errors.LocationError` for an unsupported or malformed URL (nothing is
    contacted yet: the first :meth:`Location.list` is).
    """
    if isinstance(text, Path):
        return LocalFolder(text)
    if text.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return LocalFolder(Path(unquote(urlsplit(text).path)))
    if is_url(text):
        return ObjectStoreLocation(text)
    return LocalFolder(Path(text))
