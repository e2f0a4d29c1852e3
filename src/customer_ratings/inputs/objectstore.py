"""Object storage (``s3://``, ``gs://``, ``az://``) as an input and output location, through obstore.

One API for S3 (and MinIO, Ceph, test servers through ``AWS_ENDPOINT_URL``), Google Cloud Storage and Azure
Blob Storage. Credentials, region and endpoint come from the provider's standard environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``;
``GOOGLE_APPLICATION_CREDENTIALS``; ``AZURE_STORAGE_ACCOUNT_NAME``, ``AZURE_STORAGE_ACCOUNT_KEY``, ...), as
obstore reads them.

Reads are ranged GETs of :data:`PART_SIZE` bytes, each conditional on the ETag the listing returned
(``If-Match``) and streamed in blocks of :data:`CHUNK_SIZE`: an object replaced while it is read fails the next
part with 412, which becomes :class:`~customer_ratings.errors.ObjectChanged`. Nothing is downloaded whole or
held whole in memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import from_url

from ..errors import FileRejected, LocationError, LocationUnreachable, ObjectChanged, RejectReason
from .base import Entry

if TYPE_CHECKING:
    from obstore.store import ObjectStore

SCHEMES = frozenset({"s3", "gs", "az", "abfs", "abfss"})
"""URL schemes handled here; anything else with ``://`` is refused."""
PART_SIZE = 64 << 20
"""Bytes per ranged, ETag-conditional GET."""
CHUNK_SIZE = 1 << 20
"""Bytes per block handed out of a GET's body stream (the loader reads 1 MiB blocks)."""

_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY",
                     "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET", "GOOGLE_SERVICE_ACCOUNT_KEY")
_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*")
_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_HTTP_STATUS = re.compile(r"status code: (\d{3})")


def is_url(text: str) -> bool:
    """Whether ``text`` looks like ``scheme://...`` (anything but a local path)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def split_url(text: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b/`` -> ``("s3", "bucket", "a/b")``; LocationError for anything unusable."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise LocationError(f"{scheme}:// locations are not supported: use a local folder or an s3://, gs:// or "
                            "az:// URL")
    if "@" in parts.netloc or parts.password is not None:
        raise LocationError(f"{scheme}:// URL with credentials in it: remove them and set them in the "
                            "environment (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    if not parts.netloc:
        raise LocationError(f"{text!r} names no bucket: write {scheme}://BUCKET/PREFIX/")
    if parts.query or parts.fragment:
        raise LocationError(f"{scheme}://{parts.netloc}{parts.path}: a location URL takes no ?query or #fragment")
    return scheme, parts.netloc, parts.path.strip("/")


_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (a service-account key file)",
    "az": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or another Azure credential)",
}


def _credential_hint(where: str) -> str:
    scheme = where.split(":", 1)[0].lower()
    return _CREDENTIALS["az" if scheme in ("az", "abfs", "abfss") else scheme if scheme in _CREDENTIALS else "s3"]


def _allow_http() -> bool:
    endpoints = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT", "GOOGLE_STORAGE_ENDPOINT",
                 "AZURE_STORAGE_ENDPOINT")
    return any(os.environ.get(name, "").lower().startswith("http://") for name in endpoints)


def make_store(scheme: str, bucket: str, *, max_retries: int = 3) -> ObjectStore:
    """An obstore store for the bucket (or container), configured from the standard environment."""
    client: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=10),
        "read_timeout": timedelta(seconds=60),
        "timeout": timedelta(hours=1),
    }
    if _allow_http():
        client["allow_http"] = True
    retry: dict[str, Any] = {
        "max_retries": max_retries,
        "retry_timeout": timedelta(seconds=60),
        "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2},
    }
    extra: dict[str, Any] = {}
    if scheme == "s3" and _wants_aws_profile():
        extra["credential_provider"] = _profile_credentials()
    try:
        return from_url(f"{scheme}://{bucket}/", client_options=client, retry_config=retry, **extra)  # type: ignore[call-overload,no-any-return]
    except (BaseError, ValueError) as exc:
        hint = f" (set {_credential_hint(scheme + ':')})" if "must be specified" in str(exc) else ""
        raise LocationError(f"{scheme}://{bucket}/ cannot be used: {_short(exc)}{hint}") from None


def _wants_aws_profile() -> bool:
    """No keys in the environment but a profile or a shared config: obstore alone does not read those files."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return False
    if os.environ.get("AWS_PROFILE"):
        return True
    files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
             os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")]
    return any(os.path.isfile(os.path.expanduser(f)) for f in files)


def _profile_credentials() -> Any:
    """Credentials from ``AWS_PROFILE`` / ``~/.aws`` through boto3's resolver (SSO, assume-role, ...)."""
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise LocationError("AWS_PROFILE or ~/.aws/config is set up, and reading it needs boto3: "
                            "pip install boto3, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    try:
        return Boto3CredentialProvider()
    except Exception as exc:  # noqa: BLE001 - botocore's ProfileNotFound, NoCredentialsError, ...: all one line for the user
        raise LocationError(f"AWS credentials of profile {os.environ.get('AWS_PROFILE', 'default')!r} cannot be "
                            f"used: {scrub(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def scrub(text: str) -> str:
    """``text`` without the value of any credential variable set in the environment."""
    for name in _SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _short(exc: BaseException) -> str:
    """The first line of an obstore error, without its debug dump and credentials."""
    text = str(exc).split("\n\nDebug source:", 1)[0]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return scrub(_QUERY.sub(r"\1?...", first))[:300]  # a query string may carry a SAS token or a signature


def describe_failure(exc: BaseException, where: str) -> LocationError:
    """The one-line LocationError for a failed list/put/head at ``where`` (a URL without credentials)."""
    text = str(exc)
    code_match = _CODE.search(text)
    code = code_match.group(1) if code_match else ""
    status_match = _HTTP_STATUS.search(text)
    status = status_match.group(1) if status_match else ""
    lowered = text.lower()
    # without keys in the environment obstore asks the instance metadata service (IMDS) for credentials
    from_metadata = any(marker in text for marker in ("169.254.169.254", "/latest/api/token", "/latest/meta-data"))
    missing = isinstance(exc, NotFoundError | FileNotFoundError) and not code
    if code in ("NoSuchBucket", "ContainerNotFound") or missing:
        return LocationError(f"{where}: the bucket does not exist (check the URL, the region and AWS_ENDPOINT_URL)")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                "AuthenticationFailed", "InvalidAuthenticationInfo") or isinstance(exc, UnauthenticatedError):
        detail = f" ({code})" if code else ""
        return LocationError(f"{where}: the credentials were refused{detail}: check {_credential_hint(where)}")
    if code in ("AccessDenied", "AuthorizationFailure", "AuthorizationPermissionMismatch") or isinstance(
            exc, PermissionDeniedError | PermissionError) or (status == "403" and not from_metadata):
        return LocationError(f"{where}: access denied: the credentials have no permission for this bucket/prefix")
    if from_metadata or ("credential" in lowered and ("metadata" in lowered or "token" in lowered)):
        return LocationError(f"{where}: no credentials found: set {_credential_hint(where)} in the environment")
    if ("error sending request" in lowered or "connect" in lowered or "dns" in lowered or "timed out" in lowered
            or "timeout" in lowered) and not status:
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the provider's endpoint"
        return LocationUnreachable(f"{where}: the object store at {scrub(endpoint)} cannot be reached "
                                   "(connection failed): check the network and AWS_ENDPOINT_URL, then run again")
    return LocationError(f"{where}: {_short(exc)}")


class ObjectStoreLocation:
    """A prefix in a bucket (one level, like a folder): ``s3://bucket/prefix/``, ``gs://...``, ``az://...``."""

    def __init__(self, url: str, *, max_retries: int = 3, part_size: int = PART_SIZE,
                 chunk_size: int = CHUNK_SIZE) -> None:
        self.scheme, self.bucket, self.prefix = split_url(url)
        self.store = make_store(self.scheme, self.bucket, max_retries=max_retries)
        self.part_size = part_size
        self.chunk_size = chunk_size

    @property
    def uri(self) -> str:
        """``scheme://bucket/prefix/``: no credentials."""
        return f"{self.scheme}://{self.bucket}/{self.prefix + '/' if self.prefix else ''}"

    def key_for(self, name: str) -> str:
        """The object key of ``name`` directly under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri_for(self, key: str) -> str:
        """``scheme://bucket/key``."""
        return f"{self.scheme}://{self.bucket}/{key}"

    def list(self) -> list[Entry]:
        """The objects directly under the prefix and its sub-prefixes (``is_dir``), sorted by name."""
        try:
            result = obstore.list_with_delimiter(self.store, self.prefix or None)
        except (BaseError, OSError) as exc:
            raise describe_failure(exc, self.uri) from None
        entries = [
            Entry(name=meta["path"].rsplit("/", 1)[-1], uri=self.uri_for(meta["path"]), size=meta["size"],
                  modified=meta["last_modified"], etag=meta["e_tag"], version=meta["version"], key=meta["path"])
            for meta in result["objects"]
        ]
        entries += [
            Entry(name=sub.rstrip("/").rsplit("/", 1)[-1], uri=self.uri_for(sub.rstrip("/") + "/"), size=0,
                  modified=None, is_dir=True, key=sub.rstrip("/"))
            for sub in result["common_prefixes"]
        ]
        return sorted(entries, key=lambda e: e.name)

    def open(self, entry: Entry) -> ObjectReader:
        """A stream of the object as listed (pinned to its ETag); see :class:`ObjectReader`."""
        if entry.is_dir:
            raise FileRejected(RejectReason.UNREADABLE, "is a prefix (a folder), not an object")
        key = entry.key if entry.key is not None else self.key_for(entry.name)
        return ObjectReader(self.store, key, self.uri_for(key), entry.size, entry.etag,
                            part_size=self.part_size, chunk_size=self.chunk_size)

    def put(self, name: str, data: bytes) -> str:
        """Write ``data`` as the object ``name`` under the prefix in ONE PUT (atomic on the store)."""
        key = self.key_for(name)
        try:
            obstore.put(self.store, key, data, use_multipart=False)
        except (BaseError, OSError) as exc:
            raise describe_failure(exc, self.uri_for(key)) from None
        return self.uri_for(key)

    def delete(self, name: str) -> None:
        """Delete the object ``name`` under the prefix."""
        key = self.key_for(name)
        try:
            obstore.delete(self.store, key)
        except (BaseError, OSError) as exc:
            raise describe_failure(exc, self.uri_for(key)) from None


class ObjectReader:
    """Reads one object as it was listed: ranged GETs conditional on its ETag, streamed in blocks.

    ``read(n)`` returns at most ``n`` bytes. Raises :class:`ObjectChanged` when the object was replaced
    (412 on ``If-Match``), deleted, or is shorter than listed, and ``FileRejected(unreadable)`` for other
    failures (after obstore's retries).
    """

    def __init__(self, store: ObjectStore, key: str, uri: str, size: int, etag: str | None, *,
                 part_size: int = PART_SIZE, chunk_size: int = CHUNK_SIZE) -> None:
        self._store = store
        self._key = key
        self.uri = uri
        self.size = size
        self.etag = etag
        self._part_size = max(1, part_size)
        self._chunk_size = max(1, chunk_size)
        self._requested = 0  # bytes asked for by the GETs started so far
        self._received = 0  # bytes that came back
        self._chunks: Iterator[Any] | None = None
        self._buffer = memoryview(b"")
        self._offset = 0
        self.closed = False
        self._next_part()  # fail at open, not at the first read, when the object is gone or changed

    def _next_part(self) -> bool:
        if self._requested >= self.size:
            return False
        end = min(self.size, self._requested + self._part_size)
        options: dict[str, Any] = {"range": (self._requested, end)}
        if self.etag is not None:
            options["if_match"] = self.etag
        try:
            result = obstore.get(self._store, self._key, options=options)  # type: ignore[arg-type]
        except PreconditionError:
            raise ObjectChanged("the object was replaced while it was read (its ETag changed): run again") from None
        except (NotFoundError, FileNotFoundError):  # obstore raises the builtin at run time
            raise ObjectChanged("the object was deleted after it was listed: run again") from None
        except (BaseError, OSError) as exc:
            raise FileRejected(RejectReason.UNREADABLE, f"cannot be read: {_short(exc)}") from None
        if self.etag is None:  # a store without ETags in listings: pin to the first answer's
            self.etag = result.meta["e_tag"]
        elif result.meta["e_tag"] not in (None, self.etag):
            raise ObjectChanged("the object was replaced while it was read (its ETag changed): run again")
        self._chunks = iter(result.stream(min_chunk_size=self._chunk_size))
        self._requested = end
        return True

    def _fill(self) -> bool:
        """Next chunk into the buffer; False at the end of the object."""
        while True:
            if self._chunks is not None:
                try:
                    chunk = next(self._chunks)
                except StopIteration:
                    self._chunks = None
                except PreconditionError:
                    raise ObjectChanged("the object was replaced while it was read (its ETag changed): "
                                        "run again") from None
                except (BaseError, OSError) as exc:
                    raise FileRejected(RejectReason.UNREADABLE, f"reading failed: {_short(exc)}") from None
                else:
                    data = memoryview(chunk)  # no copy: read() copies each byte once, into its result
                    self._received += len(data)
                    self._buffer, self._offset = data, 0
                    return True
            if self._received < self._requested:
                raise ObjectChanged(f"the object is shorter than listed ({self._received} of {self.size} bytes "
                                    "arrived): it was replaced while it was read; run again")
            if not self._next_part():
                return False

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes (``n < 0``: all the rest, which a loader never asks for); ``b""`` at the end."""
        if self.closed:
            raise ValueError("read of a closed ObjectReader")
        pieces: list[memoryview] = []
        wanted = n if n >= 0 else 1 << 62
        while wanted > 0:
            if self._offset >= len(self._buffer) and not self._fill():
                break
            take = self._buffer[self._offset:self._offset + wanted]
            self._offset += len(take)
            wanted -= len(take)
            pieces.append(take)
        return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)

    def readable(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Drop the current GET (its connection goes back to the pool or is closed)."""
        self._chunks = None
        self._buffer = memoryview(b"")
        self.closed = True

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
