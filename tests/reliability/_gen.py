"""Generated agency files and their expected outcome, derived from SPEC.md alone (not from the loader's code).

A :class:`GenFile` is a header plus a list of items (records or blank lines) with every formatting choice
(quoting, line ends, BOM, blank lines, header order and case, encoding) made explicit. :func:`expected`
is the oracle: what SPEC.md says a load of that file must give (file rejected and why, or the multiset of
loaded rows and, for each invalid row, its line, record number, raw text, fields and failing columns).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

COLUMNS = ("customer_number", "customer_rating", "customer_rating_limit", "customer_status")
INT_COLUMNS = COLUMNS[:3]
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
STATUS_MAX = 25
_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)

# Bytes that are never part of valid UTF-8, and bytes that cp1252 leaves undefined; written into a str as
# surrogate escapes ("\udcff" is the byte 0xFF) so that str.encode(enc, "surrogateescape") writes them.
BAD_BYTES = {"utf-8": [0xFF, 0xFE, 0xC0, 0xC1, 0xF8], "cp1252": [0x81, 0x8D, 0x8F, 0x90, 0x9D], "latin-1": []}
ALPHABETS = {
    "utf-8": "abcxyz-_ .,;:'\"/\\éüß€“”—日本😀\u00a0\u200be\u0301\t\n",
    "cp1252": "abcxyz-_ .,;:'\"/\\éüß€“”—\t\n",
    "latin-1": "abcxyz-_ .,;:'\"/\\éüß¿\t\n",
}
EXTRA_NAMES = ("comment", "Region", "x", "customer_numbers", "note 2")


def bad(byte: int) -> str:
    """The str that stands for one undecodable byte."""
    return chr(0xDC00 + byte)


def has_bad(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def printable(text: str) -> str:
    """SPEC.md's rendering of stored text: bytes that do not decode as \\xNN (NUL, which PostgreSQL cannot
    store in text, likewise as \\x00)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


@dataclass
class Record:
    fields: list[str]
    quoted: list[bool] = field(default_factory=list)
    literal: str | None = None
    """The record's exact text when it is deliberately malformed CSV (then ``fields`` is unused)."""

    def text(self) -> str:
        if self.literal is not None:
            return self.literal
        out = []
        for i, value in enumerate(self.fields):
            force = self.quoted[i] if i < len(self.quoted) else False
            # A record of one empty field would be an empty line, which is skipped: quote it.
            if len(self.fields) == 1 and value == "":
                force = True
            if force or any(c in value for c in ',"\n\r') or value.startswith(" \""):
                out.append('"' + value.replace('"', '""') + '"')
            else:
                out.append(value)
        return ",".join(out)


BLANK = None  # an entirely empty line in GenFile.items


@dataclass
class Source:
    """The parts of a source config the oracle needs (mirrors customer_ratings.Source)."""

    encoding: str = "utf-8"
    allowed_status: tuple[str, ...] | None = None
    extra_columns: str = "reject"
    max_invalid_percent: float = 100.0
    min_rows: int = 0


@dataclass
class GenFile:
    header: list[str]
    """Header names as written (case and surrounding spaces included)."""
    items: list[Record | None]
    header_quoted: bool = False
    eol: str = "\n"
    """"\\n", "\\r\\n" or "mixed" (each line end drawn from ``mixed_eols``)."""
    mixed_eols: list[str] = field(default_factory=list)
    bom: bool = False
    blank_before_header: int = 0
    final_newline: bool = True
    source: Source = field(default_factory=Source)

    def __repr__(self) -> str:
        data = self.to_bytes()
        shown = repr(data[:2000]) + (f" ... ({len(data)} bytes)" if len(data) > 2000 else "")
        return f"GenFile(source={self.source}, bytes={shown})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _eols(self) -> list[str]:
        n = self.blank_before_header + 1 + len(self.items)
        if self.eol != "mixed":
            return [self.eol] * n
        return [self.mixed_eols[i % len(self.mixed_eols)] if self.mixed_eols else "\n" for i in range(n)]

    def text(self) -> str:
        eols = self._eols()
        parts = []
        k = 0
        for _ in range(self.blank_before_header):
            parts.append(eols[k])
            k += 1
        names = [('"' + n.replace('"', '""') + '"') if self.header_quoted else n for n in self.header]
        parts.append(",".join(names))
        last = len(self.items) - 1
        for i, item in enumerate(self.items):
            parts.append(eols[k])
            k += 1
            parts.append("" if item is None else item.text())
            if i == last and not self.final_newline and item is None:
                parts.append(eols[k])  # a trailing blank line needs its own line end to exist at all
        if self.final_newline:
            parts.append(eols[k])
        return "".join(parts)

    def to_bytes(self) -> bytes:
        data = self.text().encode(self.source.encoding, "surrogateescape")
        return (b"\xef\xbb\xbf" + data) if self.bom else data


@dataclass
class Invalid:
    line_number: int
    record_number: int
    raw: str
    fields: dict[str, Any] | None
    failing: dict[str | None, set[str]]
    """Failing column (None: the whole row) -> the codes SPEC.md allows for it."""


@dataclass
class Expected:
    rejected: str | None = None
    """The load_history.error_code of a rejected file, else None."""
    valid: list[tuple[int, int, int, str]] = field(default_factory=list)
    invalid: list[Invalid] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.valid) + len(self.invalid)


def _check_int(value: str) -> set[str]:
    if has_bad(value):
        return {"invalid_encoding"}
    v = value.strip(" \t")
    if not v:
        return {"missing_value"}
    if not _INT_RE.fullmatch(v):
        return {"not_an_integer"}
    digits = v.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 12:
        return {"out_of_range"}
    return set() if INT_MIN <= int(v[0] + digits if v[0] in "+-" else digits) <= INT_MAX else {"out_of_range"}


def _int_value(value: str) -> int:
    v = value.strip(" \t")
    sign = -1 if v.startswith("-") else 1
    digits = v.lstrip("+-").lstrip("0") or "0"
    return sign * int(digits)


def _check_status(value: str, source: Source) -> set[str]:
    if has_bad(value):
        return {"invalid_encoding"}
    v = value.strip(" \t")
    if not v:
        return {"missing_value"}
    codes = set()
    if "\x00" in v:
        codes.add("invalid_character")
    if len(v) > STATUS_MAX:
        codes.add("too_long")
    if source.allowed_status is not None and v not in source.allowed_status:
        codes.add("not_allowed")
    return codes


def expected(gen: GenFile) -> Expected:
    """What SPEC.md says loading ``gen`` must give."""
    src = gen.source
    names = [n.strip(" \t") for n in gen.header]
    lowered = [n.lower() for n in names]
    if any(c not in lowered for c in COLUMNS) or len(set(lowered)) != len(lowered):
        return Expected(rejected="bad_header")
    if any(n not in COLUMNS for n in lowered) and src.extra_columns == "reject":
        return Expected(rejected="bad_header")
    mapping = [n if n in COLUMNS else None for n in lowered]
    out = Expected()
    line = gen.blank_before_header + 1  # the header's line
    record_number = 0
    for item in gen.items:
        line += 1
        if item is None:
            continue
        record_number += 1
        text = item.text()
        start = line
        line += text.count("\n")
        if item.literal is not None:
            out.invalid.append(Invalid(start, record_number, printable(text), None, {None: {"malformed_csv"}}))
            continue
        if len(item.fields) != len(mapping):
            out.invalid.append(Invalid(start, record_number, printable(text), None,
                                       {None: {"wrong_field_count"}}))
            continue
        failing: dict[str | None, set[str]] = {}
        for name, column, value in zip(names, mapping, item.fields, strict=True):
            if column is None:
                if has_bad(value):  # undecodable bytes invalidate the row in an ignored column too
                    failing[name] = {"invalid_encoding"}
                continue
            codes = _check_status(value, src) if column == "customer_status" else _check_int(value)
            if codes:
                failing[column] = codes
        if failing:
            shown = {name: printable(v) for name, v in zip(names, item.fields, strict=True)}
            out.invalid.append(Invalid(start, record_number, printable(text), shown, failing))
            continue
        by_column = {c: v for c, v in zip(mapping, item.fields, strict=True) if c is not None}
        out.valid.append((
            _int_value(by_column["customer_number"]),
            _int_value(by_column["customer_rating"]),
            _int_value(by_column["customer_rating_limit"]),
            by_column["customer_status"].strip(" \t"),
        ))
    if out.rows_read < src.min_rows:
        return Expected(rejected="too_few_rows")
    if out.rows_read and 100.0 * len(out.invalid) / out.rows_read > src.max_invalid_percent:
        return Expected(rejected="too_many_invalid")
    return out


# --------------------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------------------

_pad = st.sampled_from(["", "", "", " ", "\t", "  ", " \t "])


@st.composite
def _int_text(draw: st.DrawFn, value: int) -> str:
    sign = "-" if value < 0 else draw(st.sampled_from(["", "", "", "+"]))
    zeros = "0" * draw(st.sampled_from([0, 0, 0, 1, 3]))
    return draw(_pad) + sign + zeros + str(abs(value)) + draw(_pad)


NOT_INTEGERS = ["12a", "1.5", "1e3", "0x1F", "z1111753583", "1 2", "--1", "+-1", "+", "-", "\uff11\uff12", "١٢",
                "1_000", "1,000", "NaN", "½", "\u00a012", "12\u200b", "1\x002", "'7'", "(5)", "٣", "1\n2"]


@st.composite
def int_field(draw: st.DrawFn, encoding: str, valid: bool = False) -> str:
    kinds = ["valid"] * 8 + ["huge_pad"] if valid else ["valid"] * 4 + ["range", "not_int", "missing", "bad",
                                                                         "huge_pad", "digits"]
    kind = draw(st.sampled_from(kinds))
    if kind == "valid":
        return draw(_int_text(draw(st.integers(INT_MIN, INT_MAX) | st.sampled_from([0, INT_MIN, INT_MAX]))))
    if kind == "range":
        value = draw(st.sampled_from([INT_MAX + 1, INT_MIN - 1, 10**12, -(10**19), 10**30])
                     | st.integers(INT_MAX + 1, 10**15) | st.integers(-(10**15), INT_MIN - 1))
        return draw(_int_text(value))
    if kind == "not_int":
        text = draw(st.sampled_from(NOT_INTEGERS))
        return "".join(ch for ch in text if ch in ALPHABETS[encoding] or ch.isascii())
    if kind == "missing":
        return draw(st.sampled_from(["", " ", "\t", " \t "]))
    if kind == "bad" and BAD_BYTES[encoding]:
        return "1" + bad(draw(st.sampled_from(BAD_BYTES[encoding]))) + "2"
    if kind == "huge_pad":
        # Rare: a field over a megabyte (crosses the loader's 1 MiB blocks); still a valid integer.
        if draw(st.integers(0, 9)) == 0:
            return " " * draw(st.integers(1 << 20, (1 << 20) + 300_000)) + "42"
        return " " * draw(st.integers(50, 3000)) + "7"
    # many digits: leading zeros (valid) or too many significant digits (out of range), up to 5000
    count = draw(st.sampled_from([20, 400, 4299, 4301, 5000]))
    return "0" * count + "9" if draw(st.booleans()) else "9" * count


@st.composite
def status_field(draw: st.DrawFn, encoding: str, allowed: tuple[str, ...] | None, valid: bool = False) -> str:
    pool = ["high-value", "low-value", " high-value ", "\thigh-value", "HIGH-VALUE", "medium", "a,b",
            'say "hi"', "multi\nline", "multi\r\nline", "x" * 25, "é" * 25, "“high-value”", "\\.",
            "a\n\\.\nb", "Société", "ends with space ", "€"]
    if encoding == "utf-8":
        pool += ["😀" * 25, "日本語", "e\u0301" * 12]
    pool = [p for p in pool if _encodable(p, encoding)]
    kinds = ["allowed"] if valid and allowed else ["pool"] * 6 + ["allowed"] * 4 + ["text"] if valid else \
        ["pool"] * 6 + ["allowed"] * 4 + ["text", "long", "missing", "nul", "bad", "huge"]
    kind = draw(st.sampled_from(kinds))
    if kind == "pool":
        return draw(st.sampled_from(pool))
    if kind == "allowed":
        value = draw(st.sampled_from(allowed or ("high-value", "low-value")))
        return draw(_pad) + value + draw(_pad)
    if kind == "text":
        return draw(st.text(ALPHABETS[encoding], min_size=0, max_size=30))
    if kind == "long":
        return draw(st.text(ALPHABETS[encoding].replace(" ", "").replace("\t", ""), min_size=26, max_size=60))
    if kind == "missing":
        return draw(st.sampled_from(["", " ", "\t"]))
    if kind == "nul":
        return "low\x00value"
    if kind == "bad" and BAD_BYTES[encoding]:
        return "low" + bad(draw(st.sampled_from(BAD_BYTES[encoding]))) + "value"
    if kind == "huge" and draw(st.integers(0, 9)) == 0:
        # Rare: a 1-1.3 MB status (too long), sometimes spanning thousands of lines inside its quotes.
        size = draw(st.integers(1 << 20, (1 << 20) + 300_000))
        return ("y" * 99 + "\n") * (size // 100) if draw(st.booleans()) else "z" * size
    return "low-value"


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


@st.composite
def records(draw: st.DrawFn, mapping: list[str | None], src: Source) -> Record:
    kind = draw(st.sampled_from(["valid"] * 8 + ["row"] * 6 + ["short", "long", "malformed"]))
    valid = kind == "valid"
    fields = []
    for column in mapping:
        if column is None:
            if kind == "row" and draw(st.integers(0, 5)) == 0:
                fields.append("n" + bad(draw(st.sampled_from(BAD_BYTES[src.encoding]))) + "t")
            else:
                fields.append(draw(st.text(ALPHABETS[src.encoding], max_size=8)))
        elif column == "customer_status":
            fields.append(draw(status_field(src.encoding, src.allowed_status, valid)))
        else:
            fields.append(draw(int_field(src.encoding, valid)))
    quoted = [draw(st.booleans()) for _ in fields]
    if kind == "short":
        cut = draw(st.integers(1, len(fields) - 1))
        return Record(fields[:cut], quoted[:cut])
    if kind == "long":
        extra = draw(st.lists(st.sampled_from(["", "x", "1", "high-value"]), min_size=1, max_size=3))
        return Record(fields + extra, quoted + [False] * len(extra))
    if kind == "malformed":
        template = draw(st.sampled_from(['1,2,3,"low"value', '"1" ,2,3,low-value', '1,"2"x,3,high-value']))
        return Record([], literal=template)
    return Record(fields, quoted)


@st.composite
def sources(draw: st.DrawFn) -> Source:
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["cp1252", "latin-1"]))
    allowed = draw(st.sampled_from([None, None, ("high-value", "low-value"), ("high-value", "low-value", "Société")]))
    return Source(
        encoding=encoding,
        allowed_status=allowed,
        extra_columns=draw(st.sampled_from(["reject", "ignore", "ignore"])),
        max_invalid_percent=draw(st.sampled_from([100.0] * 8 + [50.0, 0.0])),
        min_rows=draw(st.sampled_from([0] * 9 + [3])),
    )


def _cased(draw: st.DrawFn, name: str) -> str:
    style = draw(st.sampled_from(["same"] * 4 + ["upper", "title", "pad"]))
    if style == "upper":
        return name.upper()
    if style == "title":
        return name.title()
    if style == "pad":
        return draw(st.sampled_from([" ", "\t", "  "])) + name + draw(st.sampled_from(["", " ", "\t"]))
    return name


@st.composite
def gen_files(draw: st.DrawFn) -> GenFile:
    """A random agency file: valid rows mixed with every kind of invalid row and every formatting choice."""
    src = draw(sources())
    names: list[str] = list(draw(st.permutations(COLUMNS)))
    header_fault = draw(st.sampled_from(["none"] * 16 + ["missing", "duplicate", "extra", "extra"]))
    if header_fault == "missing":
        names.pop(draw(st.integers(0, 3)))
    elif header_fault == "duplicate":
        names.insert(draw(st.integers(0, 4)), draw(st.sampled_from(COLUMNS)).upper())
    elif header_fault == "extra":
        for _ in range(draw(st.integers(1, 2))):
            names.insert(draw(st.integers(0, len(names))), draw(st.sampled_from(EXTRA_NAMES)))
        if len({n.lower() for n in names}) != len(names):
            names = list(dict.fromkeys(names))
    header = [_cased(draw, n) for n in names]
    lowered = [n.lower() for n in names]
    mapping = [n if n in COLUMNS else None for n in lowered]
    items: list[Record | None] = []
    if all(c in lowered for c in COLUMNS):
        n_items = draw(st.integers(0, 25))
        for _ in range(n_items):
            if draw(st.integers(0, 9)) == 0:
                items.append(BLANK)
            else:
                items.append(draw(records(mapping, src)))
    else:
        items = [Record(["1", "2", "3", "low-value"][: len(mapping)])]
    eol = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    return GenFile(
        header=header,
        items=items,
        header_quoted=draw(st.integers(0, 5)) == 0,
        eol=eol,
        mixed_eols=draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=2, max_size=5)) if eol == "mixed" else [],
        bom=src.encoding == "utf-8" and draw(st.booleans()),
        blank_before_header=draw(st.sampled_from([0, 0, 0, 1, 2])),
        final_newline=draw(st.integers(0, 3)) != 0,
        source=src,
    )
