"""The quality page (issue 16): a self-contained HTML page per day from the load history and invalid rows."""

from .page import build_quality_page, database_display, quality_page_name, write_quality_page

__all__ = ["build_quality_page", "database_display", "quality_page_name", "write_quality_page"]
