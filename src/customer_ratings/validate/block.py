"""The block driver: line-aligned blocks of a file -> bytes ready for COPY, plus invalid rows.

Two paths give the same answer (see docs/adr/0002-validation.md):

- fast: one RE2 pattern per file checks whole lines of a block at once (pyarrow, vectorized). It accepts only
  the plainest spelling of a valid row (no quotes, no spaces, no leading zeros, ASCII status) and encodes the
  INTEGER range in the pattern, so a line it accepts is sent to COPY as its original bytes.
- slow: every other line is parsed as CSV (quotes, multi-line fields) and checked column by column
  (:meth:`RowRules.check`). It may still be valid (then it is re-written in canonical form) or it becomes an
  :class:`InvalidRow`; plain lines are first diagnosed column-wise (``vectorized``) in batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Source
from ..errors import ErrorCode
from ..parse import MAX_RECORD_BYTES, parse_record
from .rules import FieldError, InvalidRow, Layout, RowRules, printable, record_too_large
from .vectorized import ELIGIBLE, PendingLines, diagnose


@dataclass
class BlockResult:
    """What one block gave: COPY-ready bytes, invalid rows, and how far it got."""

    valid: list[bytes | memoryview] = field(default_factory=list)
    valid_rows: int = 0
    invalid: list[InvalidRow] = field(default_factory=list)
    invalid_copy: list[bytes] = field(default_factory=list)
    """``file_invalid_rows`` COPY text of the invalid rows diagnosed column-wise."""
    vector_invalid: int = 0
    lines: int = 0
    consumed: int = 0


class BlockValidator(RowRules):
    """Validates line-aligned blocks of one file against one source's rules."""

    def __init__(self, layout: Layout, source: Source, eol: bytes, copy_prefix: str | None = None) -> None:
        """``copy_prefix`` (the leading COPY text columns of file_invalid_rows) enables column-wise diagnosis."""
        super().__init__(layout, source, eol)
        # The column-wise path writes the allowed statuses into its JSON as literal text: it takes only plain
        # ones; a status with a quote, a backslash or a control character sends the rows the row-by-row way.
        plain = all(s.isprintable() and '"' not in s and "\\" not in s for s in source.allowed_status or ())
        self.copy_prefix = copy_prefix if plain else None
        self.records = 0
        self._pattern = self.fast_pattern() if layout.passthrough else None
        self._pending = PendingLines()

    def process(self, data: bytes, first_line: int, eof: bool) -> BlockResult:
        """Validate the complete records of ``data``; ``consumed`` says where an unfinished one starts.

        Some invalid rows may be reported with a later block (they are diagnosed in batches); all of them are
        in the result of the last block (``eof``).
        """
        result = self._process(data, first_line, eof)
        if eof:
            self._diagnose_pending(result)
        return result

    def _process(self, data: bytes, first_line: int, eof: bool) -> BlockResult:
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10) + 1
        if eof and data and data[-1] != 10:
            ends = np.append(ends, len(data))
        n = len(ends)
        result = BlockResult()
        if n == 0:
            return result
        offsets = np.zeros(n + 1, dtype=np.int64)
        offsets[1:] = ends
        if self._pattern is None:
            return self._process_rows(data, offsets, list(range(n)), first_line, eof, result)
        lines = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        ok = pc.match_substring_regex(lines, self._pattern).to_numpy(zero_copy_only=False)
        if ok.all():
            result.valid.append(data[: offsets[n]])
            result.valid_rows = n
            self.records += n
            result.lines, result.consumed = n, int(offsets[n])
            return result
        if b'"' in data:  # records may span lines: go row by row in file order
            return self._process_rows(data, offsets, np.flatnonzero(~ok).tolist(), first_line, eof, result)
        return self._process_plain(data, buf, lines, ok, offsets, first_line, result)

    def _process_plain(self, data: bytes, buf: np.ndarray, lines: pa.Array, ok: np.ndarray, offsets: np.ndarray,
                       first_line: int, result: BlockResult) -> BlockResult:
        """A block without quotes: one record per line, so everything can be done column-wise.

        The lines the pattern accepted go to COPY as one slice of bytes (row order does not matter to a
        table); the others are diagnosed vectorized, and only the few that need it one by one.
        """
        n = len(ok)
        lengths = np.diff(offsets)
        bad = np.flatnonzero(~ok)
        if len(bad) * 16 < n:
            # The runs of good lines between the few bad ones, as slices: one copy of the bytes, nothing more.
            view = memoryview(data)
            run_starts = [0, *offsets[bad + 1].tolist()]
            run_ends = [*offsets[bad].tolist(), int(offsets[n])]
            good = b"".join([view[a:b] for a, b in zip(run_starts, run_ends, strict=True) if b > a])
        else:  # many bad lines: one byte mask is cheaper than thousands of slices
            good = buf[np.repeat(ok, lengths)].tobytes()
        if good and good[-1] != 10:
            good += self.eol  # the file's last line had no line end, and more lines may follow it
        result.valid.append(good)
        result.valid_rows = n - len(bad)
        first = buf[offsets[bad]]
        blank = ((lengths[bad] == 1) & (first == 10)) | (
            (lengths[bad] == 2) & (first == 13) & (buf[np.minimum(offsets[bad] + 1, len(buf) - 1)] == 10))
        is_record = np.ones(n, dtype=np.int64)
        is_record[bad[blank]] = 0
        record_numbers = self.records + np.cumsum(is_record)
        self.records = int(record_numbers[-1])
        one_by_one = bad[~blank]
        if one_by_one.size and self.copy_prefix is not None:
            one_by_one = self._collect_plain(buf, lines, offsets, one_by_one, first_line, record_numbers, result)
        for i in one_by_one.tolist():
            raw = _strip_eol(data[offsets[i]:offsets[i + 1]])
            text, encoding_ok = _decode(raw)
            self._finish(text.split(","), None, text, encoding_ok, first_line + i, int(record_numbers[i]), result)
        result.lines, result.consumed = n, int(offsets[n])
        return result

    def _collect_plain(self, buf: np.ndarray, lines: pa.Array, offsets: np.ndarray, candidates: np.ndarray,
                       first_line: int, record_numbers: np.ndarray, result: BlockResult) -> np.ndarray:
        """Queue the candidates the column-wise diagnosis can take (diagnosing a full batch); return the rest."""
        eligible = pc.match_substring_regex(lines.take(pa.array(candidates)), ELIGIBLE).to_numpy(
            zero_copy_only=False)
        plain = candidates[eligible]
        if not plain.size:
            return candidates
        ends = offsets[plain + 1]
        ends = ends - (buf[ends - 1] == 10)
        ends = ends - ((ends > offsets[plain]) & (buf[np.maximum(ends - 1, 0)] == 13))
        self._pending.add(buf, offsets[plain], ends, first_line + plain, record_numbers[plain])
        if self._pending.full:
            self._diagnose_pending(result)
        rest: np.ndarray = candidates[~eligible]
        return rest

    def _diagnose_pending(self, result: BlockResult) -> None:
        """Diagnose the plain invalid-looking lines collected so far, in one batch.

        Batching across blocks matters: with 1% invalid rows a block holds a few hundred, and the per-call
        cost of the column-wise checks would dominate."""
        batch = self._pending.take()
        if batch is None:
            return
        data, starts, ends, line_numbers, record_numbers = batch
        assert self.copy_prefix is not None
        buf = np.frombuffer(data, dtype=np.uint8)
        # A block can bring many more lines than a batch holds (a file of mostly invalid rows); their COPY text
        # is several times their size, so it is made, and handed on, a batch at a time.
        for at in range(0, len(starts), PendingLines.MAX_LINES):
            part = slice(at, at + PendingLines.MAX_LINES)
            found = diagnose(buf, starts[part], ends[part], line_numbers[part], record_numbers[part],
                             self.layout.file_columns, self.layout.header_names, self._allowed, self.copy_prefix)
            result.invalid_copy.append(found.copy_text)
            result.vector_invalid += int(found.invalid.sum())
            for k in (at + np.flatnonzero(~found.invalid)).tolist():
                text = data[starts[k]:ends[k]].decode("ascii")  # the pattern ELIGIBLE admits ASCII only
                self._finish(text.split(","), None, text, True, int(line_numbers[k]), int(record_numbers[k]),
                             result)

    def _process_rows(self, data: bytes, offsets: np.ndarray, bad: list[int], first_line: int, eof: bool,
                      result: BlockResult) -> BlockResult:
        """Row by row, in file order, for blocks with quotes (records may span lines)."""
        n = len(offsets) - 1
        view = memoryview(data)
        starts = offsets.tolist()
        cursor = 0
        for i in bad:
            if i < cursor:
                continue  # a line already taken by a multi-line record
            if i > cursor:
                result.valid.append(view[starts[cursor]:starts[i]])
                result.valid_rows += i - cursor
                self.records += i - cursor
            taken = self._record_at(data, starts, i, n, first_line, eof, result)
            if taken == 0:
                result.lines, result.consumed = i, starts[i]
                return result
            cursor = i + taken
        if cursor < n:
            result.valid.append(view[starts[cursor]:starts[n]])
            result.valid_rows += n - cursor
            self.records += n - cursor
        result.lines, result.consumed = n, starts[n]
        return result

    def _record_at(self, data: bytes, starts: list[int], i: int, n: int, first_line: int, eof: bool,
                   result: BlockResult) -> int:
        """Handle the record starting at line ``i``; return lines taken, 0 when it needs the next block."""
        line = data[starts[i]:starts[i + 1]]
        if line in (b"\n", b"\r\n", b""):
            return 1  # an entirely empty line: skipped, not a record
        if b'"' not in line:
            text, encoding_ok = _decode(_strip_eol(line))
            fields: list[str] | None = text.split(",")
            taken, parse_error = 1, None
        else:
            exhausted = False

            def decoded_lines() -> Iterator[str]:
                nonlocal exhausted
                for j in range(i, n):
                    yield _decode(data[starts[j]:starts[j + 1]])[0]
                exhausted = True

            fields, taken, parse_error = parse_record(decoded_lines())
            if exhausted and not eof:
                return 0
            taken = max(taken, 1)
            if starts[min(i + taken, n)] - starts[i] > MAX_RECORD_BYTES:
                raise record_too_large(first_line + i)
            text, encoding_ok = _decode(_strip_eol(data[starts[i]:starts[min(i + taken, n)]]))
        self.records += 1
        self._finish(fields, parse_error, text, encoding_ok, first_line + i, self.records, result)
        return taken

    def _finish(self, fields: list[str] | None, parse_error: str | None, text: str, encoding_ok: bool,
                line_number: int, record_number: int, result: BlockResult) -> None:
        """Check a parsed record and add it to the result as a COPY line or an invalid row."""
        if parse_error is not None or fields is None:
            errors = [FieldError(None, ErrorCode.MALFORMED_CSV, parse_error or "malformed CSV")]
        else:
            line_out, errors = self.check(fields, encoding_ok)
            if line_out is not None:
                result.valid.append(line_out)
                result.valid_rows += 1
                return
        result.invalid.append(InvalidRow(line_number, record_number, printable(text), self.fields_json(fields),
                                         errors))


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    return line[:-1] if line.endswith(b"\r") else line


def _decode(raw: bytes) -> tuple[str, bool]:
    """The line as text, and whether it decoded (undecodable bytes are kept as surrogate escapes)."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), False
