"""One exception root, split by the reaction each failure calls for, and the stable error codes.

- :class:`ConfigError`: stop before touching the database (exit 2).
- :class:`FileRejected`: keep the agency's previous data, record why, go on with the other agencies (exit 1).
- Row-level problems are not exceptions: they are :class:`ErrorCode` values stored in ``file_invalid_rows``.
- :class:`TransientDatabaseError`: the server went away or refused us; retry with backoff, then fail (exit 1).
"""

from __future__ import annotations

import signal
from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """Why a data row is invalid. Stored in ``file_invalid_rows.errors``: add codes, never rename them."""

    MISSING_VALUE = "missing_value"
    NOT_AN_INTEGER = "not_an_integer"
    OUT_OF_RANGE = "out_of_range"
    TOO_LONG = "too_long"
    NOT_ALLOWED = "not_allowed"
    WRONG_FIELD_COUNT = "wrong_field_count"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_CHARACTER = "invalid_character"
    MALFORMED_CSV = "malformed_csv"


class RejectReason(StrEnum):
    """Why a whole file is rejected. Stored in ``load_history.error_code``: add, never rename."""

    EMPTY_FILE = "empty_file"
    NO_HEADER = "no_header"
    BAD_HEADER = "bad_header"
    TOO_MANY_INVALID = "too_many_invalid"
    TOO_FEW_ROWS = "too_few_rows"
    RECORD_TOO_LARGE = "record_too_large"
    UNREADABLE = "unreadable"
    FILE_CHANGED = "file_changed"

    @property
    def retryable(self) -> bool:
        """Whether loading the same file again later may succeed (it was still being written)."""
        return self is RejectReason.FILE_CHANGED


class LoadStatus(StrEnum):
    """What happened to one agency's file. Stored in ``load_history.status``: add, never rename."""

    LOADED = "loaded"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    FAILED = "failed"
    MISSING = "missing"


class CustomerRatingsError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(CustomerRatingsError):
    """The configuration or the command line is wrong; nothing was touched.

    ``problems`` lists every problem found, so a user fixes them all in one go.
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class DatabaseRefused(ConfigError):
    """The database refuses us in a way no retry fixes (authentication, a missing privilege): exit 2."""


class FileRejected(CustomerRatingsError):
    """A file as a whole cannot be loaded; the agency keeps its previous data."""

    def __init__(self, reason: RejectReason, message: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(message)


class DatabaseError(CustomerRatingsError):
    """The database refused an operation in a way a retry will not fix."""


class TransientDatabaseError(DatabaseError):
    """The database could not be reached or dropped the connection; retrying may help."""


class LocationError(CustomerRatingsError):
    """A data or output location cannot be used at all: nothing could be listed, read or written there.

    Raised for a missing folder or bucket, missing or wrong credentials, access denied, a malformed URL. The
    message is one line and never contains a credential.
    """

    exit_code = 2
    retryable = False


class LocationUnreachable(LocationError):
    """The object store's endpoint did not answer (connection refused, DNS, timeout); running again may help
    (exit 1, like a database that cannot be reached)."""

    exit_code = 1
    retryable = True


class OutputError(LocationError):
    """The output location cannot be written (missing, read-only, full, access denied): one clear line."""


class ObjectChanged(FileRejected):
    """An object was replaced (its ETag changed) or shortened while it was read: rejected as ``file_changed``."""

    def __init__(self, message: str) -> None:
        super().__init__(RejectReason.FILE_CHANGED, message)

    retryable = True


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: unwind, so that ``finally`` blocks roll the load back and stop the server.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way takes it for a failed
    load and goes on with the next agency. ``received`` keeps the first signal for the whole process, in case a
    clean-up on the way raises another exception in its place. Exit code 128 + the signal (143, 130).
    """

    received: ClassVar[int | None] = None

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class LockWaitTimeout(DatabaseError):
    """A load could not get a table lock within CUSTOMER_RATINGS_LOCK_WAIT seconds (a reader holds it);
    nothing of that load was committed, and the other agencies go on."""


class OutputWriteFailed(CustomerRatingsError):
    """An output (the report) could not be written, e.g. the disk is full; what was there before is intact."""
