"""What makes a row valid: blocks of lines -> bytes ready for COPY, plus invalid rows with every failing column.

- :mod:`.rules`: the row and header rules, their codes and messages, the fast RE2 pattern (from ``schema``).
- :mod:`.block`: the block driver, :class:`BlockValidator` (fast pattern, then the slower paths).
- :mod:`.vectorized`: the same rules column-wise, for batches of plain invalid-looking lines.
"""

from .block import BlockResult, BlockValidator
from .rules import (
    INT_FAST,
    STATUS_FAST,
    FieldError,
    InvalidRow,
    Layout,
    RowRules,
    copy_text,
    detect_eol,
    message_parts,
    plan_layout,
    summary,
    wrong_field_count_message,
)
from .vectorized import ELIGIBLE, Diagnosis, PendingLines, diagnose, gather

__all__ = [
    "ELIGIBLE",
    "INT_FAST",
    "STATUS_FAST",
    "BlockResult",
    "BlockValidator",
    "Diagnosis",
    "FieldError",
    "InvalidRow",
    "Layout",
    "PendingLines",
    "RowRules",
    "copy_text",
    "detect_eol",
    "diagnose",
    "gather",
    "message_parts",
    "plan_layout",
    "summary",
    "wrong_field_count_message",
]
