"""customer-ratings: load rating agencies' daily CSV snapshots into PostgreSQL and report on them.

The CLI (``customer_ratings.cli``) and the Airflow DAGs (``dags/``) are thin shells over these calls.
"""

from . import _blas  # noqa: F401  (first: before anything imports numpy)
from .config import Config, Settings, Source, load_config
from .db.server import Database, open_database
from .discovery import Discovery, discover
from .errors import (
    ConfigError,
    CustomerRatingsError,
    DatabaseError,
    ErrorCode,
    FileRejected,
    RejectReason,
    TransientDatabaseError,
)
from .load import LoadResult, load_source
from .pipeline import RunSummary, init_database, load_sources
from .report import report_name, write_report

__all__ = [
    "Config",
    "ConfigError",
    "CustomerRatingsError",
    "Database",
    "DatabaseError",
    "Discovery",
    "ErrorCode",
    "FileRejected",
    "LoadResult",
    "RejectReason",
    "RunSummary",
    "Settings",
    "Source",
    "TransientDatabaseError",
    "discover",
    "init_database",
    "load_config",
    "load_source",
    "load_sources",
    "open_database",
    "report_name",
    "write_report",
]
