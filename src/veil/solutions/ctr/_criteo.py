"""Criteo click logs read block by block: label, 13 integer counts, 26 hashed categories.

The layout is the real one (Criteo 1TB Click Logs, Kaggle Display Advertising Challenge): one row
per line, 40 tab-separated fields `label I1..I13 C1..C26`; label 0/1, counts are integers (may be
negative, as I2's -1/-2/-3 in the real logs) or empty, categories are 8 hex digits or empty.
Files are plain or gzip (told by their magic bytes, not their name; `day_15` also finds
`day_15.gz`).

Why it is built this way: a day is ~200M rows (~50 GB), so a file is streamed block by block and
never held whole. Each block of raw bytes goes through pyarrow's C++ CSV parser (single-threaded:
the workers of a Dask cluster are the parallelism) and is validated vectorised; only a block
found bad is read again line by line in Python, to name the first bad line ("day_15:1234: ...",
the absolute line number in the file, also inside a byte range) or to drop the bad lines and
count them. A plain file splits into byte ranges (rows whose first byte lies in [start, end)) so
that Dask partitions read disjoint rows that together are the whole file.

Tolerated: a last line without its newline, "\\r\\n" line ends, upper-case hex digits.
Refused (a bad line): an empty line, a field count other than 40, a label other than 0/1, a
count that is not a plain integer (spaces, "0x1f", "1.0"), a category that is not 8 hex
digits, a stray "\\r", and a line over 1 MiB (a binary file is not read into memory whole).
On one core (pyarrow 20, 2M generated rows, CPU time): about 500k rows/s for label + counts,
about 320k rows/s with the categories.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from veil.errors import InvalidArgument, NotFound
from veil.progress import Progress, mebibytes

N_INT, N_CAT, N_FIELDS = 13, 26, 40
INT_COLUMNS = [f"I{i}" for i in range(1, N_INT + 1)]
CAT_COLUMNS = [f"C{i}" for i in range(1, N_CAT + 1)]
COLUMNS = ["label", *INT_COLUMNS, *CAT_COLUMNS]
ON_BAD_LINES = ("error", "skip")

_GZIP_MAGIC = b"\x1f\x8b"
_READ_BYTES = 8 << 20
MAX_LINE_BYTES = 1 << 20  # a Criteo row is ~250 bytes: a longer line is not a row (and is
                          # not read into memory whole)
_INT_RE = re.compile(rb"-?[0-9]+")
_HEX_RE = re.compile(rb"[0-9a-fA-F]{8}")
_HEX_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF", start=10):
    _HEX_LUT[_c] = _i
_ALLOWED = b"0123456789abcdefABCDEF\t\n\r-"  # every byte of a good block is one of these
_ONE, _ZERO, _TAB = ord("1"), ord("0"), ord("\t")
_ARROW_BLOCK = 1 << 21  # pyarrow's parse unit: small enough to stay in cache


class BadLine(InvalidArgument):
    """A line that is not a Criteo row: "FILE:LINE: what is wrong"."""


class _LineTooLong(Exception):
    def __init__(self, lines_before: int) -> None:
        self.lines_before = lines_before  # complete lines in the reader's buffer


@dataclass
class Block:
    """Rows parsed from one stretch of a file."""

    label: np.ndarray        # int8 (n,)
    ints: np.ndarray         # float32 (n, 13), missing = NaN
    cats: np.ndarray | None  # int64 (n, 26), the hex value, missing = -1; None when cats=False
    skipped: int = 0         # bad lines skipped (on_bad_lines="skip")

    def __len__(self) -> int:
        return len(self.label)

    @staticmethod
    def empty(cats: bool = True, skipped: int = 0) -> Block:
        return Block(np.zeros(0, np.int8), np.zeros((0, N_INT), np.float32),
                     np.zeros((0, N_CAT), np.int64) if cats else None, skipped)


def resolve(path: str | os.PathLike) -> Path:
    """The file at `path` (or `path`.gz when only that exists); NotFound / InvalidArgument in
    one line when there is none, it is a folder, or it is empty."""
    p = Path(path)
    if not p.exists():
        gz = p.with_name(p.name + ".gz")
        if gz.is_file():
            p = gz
        else:
            raise NotFound(f"{p}: no such file")
    if p.is_dir():
        raise InvalidArgument(f"{p} is a folder, not a Criteo day file")
    if p.stat().st_size == 0:
        raise InvalidArgument(f"{p.name} is empty")
    return p


def _is_gzip(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file (resolved as by `resolve`) is gzip-compressed: not splittable into
    byte ranges. Told by the magic bytes, whatever the name."""
    return _is_gzip(resolve(path))


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgument(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def read_blocks(path: str | os.PathLike, *, block_rows: int = 262_144,
                on_bad_lines: str = "error", cats: bool = True, start: int = 0,
                end: int | None = None, limit: int | None = None,
                progress: Progress | None = None) -> Iterator[Block]:
    """Stream a plain or gzip Criteo file as Blocks of at most `block_rows` rows.

    start/end: a byte range of a plain file: the rows whose first byte lies in [start, end)
    (end None: to the end), for Dask partitions. limit: stop after that many rows (the seed's
    nrows). on_bad_lines "error": the first bad line raises BadLine "FILE:LINE: ..."; "skip":
    bad lines are dropped and counted in Block.skipped. Arguments are checked at the call,
    not at the first block."""
    p = resolve(path)
    block_rows = _whole("block_rows", block_rows, 1)
    if on_bad_lines not in ON_BAD_LINES:
        raise InvalidArgument(f"on_bad_lines must be one of {', '.join(ON_BAD_LINES)}, "
                              f"got {on_bad_lines!r}")
    start = _whole("start", start, 0)
    if end is not None:
        end = _whole("end", end, start)
    if limit is not None:
        limit = _whole("limit", limit, 0)
    gz = _is_gzip(p)
    if gz and (start != 0 or end is not None):
        raise InvalidArgument(f"{p.name} is gzip-compressed: byte ranges need a plain file")
    return _blocks(p, gz, block_rows, on_bad_lines == "skip", bool(cats), start, end, limit,
                   mebibytes(progress))


def _blocks(p: Path, gz: bool, block_rows: int, skip: bool, cats: bool, start: int,
            end: int | None, limit: int | None, progress: Progress) -> Iterator[Block]:
    size = p.stat().st_size
    with open(p, "rb") as raw:
        first = start
        if start > 0:  # the first row starts after the first newline at or after start - 1
            raw.seek(start - 1)
            if raw.read(1) != b"\n":
                raw.readline()
            first = raw.tell()
        stop = size if end is None else min(end, size)
        progress.start(max(stop - first, 0), f"Reading {p.name}")
        if first >= stop or limit == 0:
            return
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        try:
            reader = _Lines(stream, None if gz else stop - first)
            done = lines_read = 0
            shown = first
            while limit is None or done < limit:
                want = block_rows if limit is None else min(block_rows, limit - done)
                try:
                    chunk, starts = reader.take(want)
                except _LineTooLong as e:
                    number = (_lines_before(p, first) if first else 0) + lines_read \
                        + e.lines_before + 1
                    raise BadLine(f"{p.name}:{number}: a line longer than "
                                  f"{MAX_LINE_BYTES >> 20} MiB: not a Criteo file?") from None
                k = len(starts)
                if k == 0:
                    if lines_read == 0 and first == 0:
                        raise InvalidArgument(f"{p.name} is empty")
                    return
                block = _parse_fast(chunk, k, starts, cats)
                if block is None:
                    block = (_sift(chunk, starts, cats) if skip else
                             _parse_slow(chunk, cats, skip, p, first, lines_read))
                lines_read += k
                done += len(block)
                position = raw.tell()
                progress.advance(max(min(position, stop) - shown, 0))
                shown = max(shown, min(position, stop))
                yield block
        finally:
            if gz:
                stream.close()


class _Lines:
    """Whole lines from a binary stream, `want` at a time, reading at most `budget` bytes and
    then the rest of the line that straddles the budget (so a byte range ends on a row)."""

    def __init__(self, stream: io.BufferedIOBase, budget: int | None) -> None:
        self.stream, self.budget = stream, budget
        self.pieces: list[bytes] = []
        self.lines = 0
        self.tail = 0  # bytes read since the last newline
        self.eof = False

    def _read(self) -> bytes:
        if self.budget is None:
            return self.stream.read(_READ_BYTES)
        if self.budget <= 0:
            return b""
        data = self.stream.read(min(_READ_BYTES, self.budget))
        self.budget -= len(data)
        if self.budget <= 0 and data and not data.endswith(b"\n"):
            data += self.stream.readline(MAX_LINE_BYTES + 1)  # finish the straddling row
        return data

    def take(self, want: int) -> tuple[bytes, np.ndarray]:
        """Up to `want` lines as one bytes object ending in "\\n", and where each starts."""
        while not self.eof and self.lines < want:
            data = self._read()
            if not data:
                self.eof = True
                break
            self.pieces.append(data)
            newlines = data.count(b"\n")
            self.lines += newlines
            self.tail = (len(data) - data.rfind(b"\n") - 1) if newlines else self.tail + len(data)
            if self.tail > MAX_LINE_BYTES:  # a binary file, or no Criteo file at all
                raise _LineTooLong(self.lines)
        buf = b"".join(self.pieces)
        self.pieces = []
        if not buf:
            return b"", np.zeros(0, np.int64)
        if self.lines < want and not buf.endswith(b"\n"):  # a last line without "\n" is fine
            buf += b"\n"
            self.lines += 1
        ends = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)[:want]
        cut = int(ends[-1]) + 1
        if cut < len(buf):
            self.pieces.append(buf[cut:])
            buf = buf[:cut]
        self.lines -= len(ends)
        starts = np.empty(len(ends), np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        return buf, starts


def _arrow_options(cats: bool):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {"label": pa.int8(), **{c: pa.int64() for c in INT_COLUMNS},
             **{c: pa.string() for c in CAT_COLUMNS}}
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False,
                               escape_char=False, newlines_in_values=False,
                               ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(column_types=types, null_values=[""],
                                   strings_can_be_null=True, quoted_strings_can_be_null=False,
                                   include_columns=COLUMNS[1:] if cats else INT_COLUMNS)
    return parse, convert


_OPTIONS: dict[bool, tuple] = {}


def _parse_fast(chunk: bytes, k: int, starts: np.ndarray, cats: bool) -> Block | None:
    """The block parsed by pyarrow and checked vectorised; None when anything is off (then
    the slow pass decides, line by line). starts: the offset of each line in the chunk."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # pyarrow's integers allow spaces and "0x1f", its int8 label "00": refuse those here
    if chunk.translate(None, _ALLOWED):
        return None
    raw = np.frombuffer(chunk, np.uint8)
    if ((raw[starts] | 1) != _ONE).any() or (raw[starts + 1] != _TAB).any():
        return None  # a label other than 0 or 1
    if cats not in _OPTIONS:
        _OPTIONS[cats] = _arrow_options(cats)
    parse, convert = _OPTIONS[cats]
    read = pacsv.ReadOptions(column_names=COLUMNS, use_threads=False, block_size=_ARROW_BLOCK)
    try:
        table = pacsv.read_csv(pa.py_buffer(chunk), read_options=read, parse_options=parse,
                               convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != k:  # a stray "\r" counts as a line end for pyarrow
        return None
    label = (raw[starts] - _ZERO).astype(np.int8)
    ints = np.empty((k, N_INT), dtype=np.float32)
    block = Block(label, ints, None)
    out = np.empty((k, N_CAT), dtype=np.int64) if cats else None
    row = 0
    for batch in table.to_batches():
        n = batch.num_rows
        for j in range(N_INT):
            ints[row:row + n, j] = batch.column(j).to_numpy(zero_copy_only=False)
        if out is not None:
            for j in range(N_CAT):
                if not _hex_column(batch.column(N_INT + j), out[row:row + n, j]):
                    return None
        row += n
    block.cats = out
    return block


def _hex_column(col, out: np.ndarray) -> bool:  # type: ignore[no-untyped-def]
    """Fill `out` with the values of a string column of 8 hex digits or nulls (-1); False if
    a value is neither."""
    k = len(col)
    _validity, offsets_buf, data_buf = col.buffers()
    offsets = np.frombuffer(offsets_buf, np.int32)[col.offset:col.offset + k + 1]
    lengths = np.diff(offsets)
    present = lengths == 8
    if not (present | (lengths == 0)).all():
        return False
    out[:] = -1
    if data_buf is None or not present.any():
        return True
    nibbles = _HEX_LUT[np.frombuffer(data_buf, np.uint8)[offsets[0]:offsets[-1]]]
    if nibbles.max() > 15:
        return False
    # 8 nibbles, one a byte, first digit first: as a big-endian word, packed pairwise
    x = nibbles.view(">u8").astype(np.uint64)
    x = (x | (x >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    x = (x | (x >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    x = (x | (x >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
    out[present] = x.view(np.int64)
    return True


def _show(field: bytes) -> str:
    text = field.decode("utf-8", "replace")
    return repr(text if len(text) <= 24 else text[:21] + "...")


def _problem(fields: list[bytes]) -> str | None:
    """What is wrong with a line split at tabs, or None."""
    if len(fields) != N_FIELDS:
        if len(fields) == 1 and not fields[0]:
            return "empty line"
        return f"expected {N_FIELDS} tab-separated fields, found {len(fields)}"
    if fields[0] not in (b"0", b"1"):
        return f"label must be 0 or 1, found {_show(fields[0])}"
    for j in range(N_INT):
        f = fields[1 + j]
        if f and not _INT_RE.fullmatch(f):
            return f"{INT_COLUMNS[j]} must be an integer or empty, found {_show(f)}"
    for j in range(N_CAT):
        f = fields[1 + N_INT + j]
        if f and not _HEX_RE.fullmatch(f):
            return f"{CAT_COLUMNS[j]} must be 8 hex digits or empty, found {_show(f)}"
    return None


def _lines_before(p: Path, offset: int) -> int:
    """Newlines in the first `offset` bytes of a plain file (only counted for an error)."""
    count = 0
    with open(p, "rb") as f:
        while offset > 0:
            data = f.read(min(_READ_BYTES, offset))
            if not data:
                break
            count += data.count(b"\n")
            offset -= len(data)
    return count


def _parse_slow(chunk: bytes, cats: bool, skip: bool, p: Path, first: int,
                lines_read: int) -> Block:
    """The exact pass over a block the fast path refused: raise on the first bad line, or
    drop the bad lines and parse the rest."""
    lines = chunk.split(b"\n")
    lines.pop()  # the chunk ends with "\n"
    good: list[list[bytes]] = []
    skipped = 0
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):  # "\r\n" line ends are tolerated
            line = line[:-1]
        fields = line.split(b"\t")
        problem = _problem(fields)
        if problem is None:
            good.append(fields)
        elif skip:
            skipped += 1
        else:
            number = (_lines_before(p, first) if first else 0) + lines_read + i + 1
            raise BadLine(f"{p.name}:{number}: {problem}")
    n = len(good)
    label = np.fromiter((f[0] == b"1" for f in good), dtype=np.int8, count=n)
    ints = np.array([[float(v) if v else np.nan for v in f[1:1 + N_INT]] for f in good],
                    dtype=np.float32).reshape(n, N_INT)
    block = Block(label, ints, None, skipped)
    if cats:
        block.cats = np.array([[int(v, 16) if v else -1 for v in f[1 + N_INT:]] for f in good],
                              dtype=np.int64).reshape(n, N_CAT)
    return block


_BAD_BYTE = np.ones(256, dtype=bool)
_BAD_BYTE[np.frombuffer(_ALLOWED, np.uint8)] = False


def _sift(chunk: bytes, starts: np.ndarray, cats: bool) -> Block:
    """on_bad_lines="skip" for a block the fast path refused: drop the lines that vectorised
    checks prove bad (field count, a byte no field may hold, the label, a stray "\\r"), parse
    the rest on the fast path, and only if that still fails, line by line."""
    raw = np.frombuffer(chunk, np.uint8)
    k = len(starts)
    line_of = np.zeros(len(raw), dtype=np.int32)  # the line index of every byte
    line_of[starts[1:]] = 1
    np.cumsum(line_of, out=line_of)
    bad = np.bincount(line_of[raw == _TAB], minlength=k) != N_FIELDS - 1
    bad[line_of[_BAD_BYTE[raw]]] = True
    cr = np.flatnonzero(raw[:-1] == 13)
    bad[line_of[cr[raw[cr + 1] != 10]]] = True
    bad |= ((raw[starts] | 1) != _ONE) | (raw[starts + 1] != _TAB)
    if bad.any():
        ends = np.append(starts[1:], len(raw))
        keep = np.flatnonzero(~bad)
        lengths = (ends - starts)[keep]
        chunk = b"".join(chunk[starts[i]:ends[i]] for i in keep.tolist())
        starts = np.zeros(len(keep), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
    block = _bisect(chunk, starts, cats) if len(starts) else Block.empty(cats)
    block.skipped += int(bad.sum())
    return block


def _bisect(chunk: bytes, starts: np.ndarray, cats: bool) -> Block:
    """Skip mode: the fast path on halves of a refused block, down to pieces of 256 lines
    that go line by line: a few bad lines cost a few parses, not a pure-Python block."""
    block = _parse_fast(chunk, len(starts), starts, cats)
    if block is not None:
        return block
    if len(starts) <= 256:
        return _parse_slow(chunk, cats, True, Path(), 0, 0)
    mid = len(starts) // 2
    cut = int(starts[mid])
    halves = [_bisect(chunk[:cut], starts[:mid], cats),
              _bisect(chunk[cut:], starts[mid:] - cut, cats)]
    return Block(np.concatenate([h.label for h in halves]),
                 np.concatenate([h.ints for h in halves]),
                 np.concatenate([h.cats for h in halves]) if cats else None,  # type: ignore[misc]
                 sum(h.skipped for h in halves))


def read(path: str | os.PathLike, **options: object) -> Block:
    """All blocks of read_blocks(path, **options) in one Block."""
    blocks = list(read_blocks(path, **options))  # type: ignore[arg-type]
    cats = bool(options.get("cats", True))
    if not blocks:
        return Block.empty(cats)
    if len(blocks) == 1:
        return blocks[0]
    return Block(np.concatenate([b.label for b in blocks]),
                 np.concatenate([b.ints for b in blocks]),
                 np.concatenate([b.cats for b in blocks]) if cats else None,  # type: ignore[misc]
                 sum(b.skipped for b in blocks))


def byte_ranges(path: str | os.PathLike, parts: int) -> list[tuple[int, int | None]]:
    """A plain file split at line starts into at most `parts` ~equal byte ranges that cover
    it (the last ends at None, the end); a gzip file is not splittable: [(0, None)]."""
    p = resolve(path)
    parts = _whole("parts", parts, 1)
    if _is_gzip(p):
        return [(0, None)]
    size = p.stat().st_size
    starts = [0]
    with open(p, "rb") as f:
        for i in range(1, parts):
            b = i * size // parts
            f.seek(b - 1)
            if f.read(1) != b"\n":
                f.readline()
            s = f.tell()
            if starts[-1] < s < size:
                starts.append(s)
    ends: list[int | None] = [*starts[1:], None]
    return list(zip(starts, ends, strict=True))


def count_rows(path: str | os.PathLike) -> int:
    """Lines in a plain or gzip file (a last line without its newline counts)."""
    p = resolve(path)
    count, last = 0, b"\n"
    with open(p, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if _is_gzip(p) else raw
        try:
            while data := stream.read(_READ_BYTES):
                count += data.count(b"\n")
                last = data[-1:]
        finally:
            if stream is not raw:
                stream.close()
    if count == 0 and last == b"\n":
        raise InvalidArgument(f"{p.name} is empty")
    return count + (last != b"\n")
