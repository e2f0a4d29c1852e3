"""Untrusted text (file names, source names, header values) made safe to print on one line.

File names come from whoever can write into the data folder: a newline in one would split an error line in two
(and forge a second one), an ANSI escape would rewrite the terminal. Every message this package builds that
names a file or quotes a header value passes it through :func:`safe`; so should any printing of such names
(the CLI's tables).
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and lone surrogates (undecodable
# bytes of a name, kept by os.fsdecode as U+DC80..U+DCFF, which no terminal or UTF-8 encoder takes).
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(text: str, limit: int | None = None) -> str:
    r"""``text`` with control characters escaped (``\n``, ``\t``, ``\x1b``, ``\u2028``...), so that it prints
    as one line and cannot drive a terminal; cut to ``limit`` characters of the original text (then ``...``).

    A backslash is left as it is: the result is for reading, not for parsing back.
    """
    cut = limit is not None and len(text) > limit
    if cut:
        assert limit is not None
        text = text[:limit]
    if _UNSAFE_RE.search(text):
        text = _UNSAFE_RE.sub(_escape, text)
    return text + "..." if cut else text
