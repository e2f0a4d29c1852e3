"""Database-level tests of the loader."""
