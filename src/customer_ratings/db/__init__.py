"""Database access: the server (embedded or any PostgreSQL), connections with retry, and migrations."""

from .server import Database, open_database

__all__ = ["Database", "open_database"]
