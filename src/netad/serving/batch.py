"""Batch scoring (predict.py): a CSV of records in, the same rows plus ``score`` and ``is_anomaly`` out.

The file is read in chunks, so memory stays flat however large it is. Rows that cannot be
scored (a non-number in a numeric column, a missing value the model does not impute, ...) go
to a rejects file with their row number and the reason; every other row is scored. No label
column is needed; any extra column is passed through.
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd
import torch

from netad.inference import load_predictor
from netad.io import atomic_target
from netad.data.compression import decompressing, open_binary
from netad.errors import UserError, os_error_line
from netad.serving.output import DirectWriter


@dataclass
class BatchResult:
    output: Path
    rejects: Optional[Path]
    n_rows: int
    n_scored: int
    n_rejected: int
    n_flagged: int
    seconds: float
    direct: bool = False  # written to the process's stdout or stderr
    imputed_non_numbers: dict[str, int] = field(default_factory=dict)  # column -> cells that were not numbers

    @property
    def rows_per_second(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else float("nan")


_MAX_BLOCK_BYTES = 4 << 20  # raw CSV read at a time; a block also holds at most chunk_size rows
_MIN_BLOCK_BYTES = 256 << 10  # smaller files are split into blocks of this size or more
_MAX_RECORD_BYTES = 64 << 20  # a record (a line, or lines joined by a quoted field) may not be longer
SCORE_DECIMALS = 9  # written scores: fixed point, enough for float32 scores in [0, 1]; a multiple of 3


def block_bytes(file_size: int, workers: int) -> int:
    """Bytes read per block: _MAX_BLOCK_BYTES, or less for a small file, so it still gives each
    scoring thread two blocks."""
    return max(_MIN_BLOCK_BYTES, min(_MAX_BLOCK_BYTES, file_size // (2 * workers)))


class _Source:
    """The input file as blocks of whole records, plus what is needed to parse any block on its own:
    the column names (from the model's config for headerless data, else the header line) and the
    column types pandas reads blocks with (category columns as text)."""

    def __init__(self, path: Path, predictor: Any, block_bytes: int = _MAX_BLOCK_BYTES) -> None:
        self.path, self.block_bytes = path, block_bytes
        self.dtypes = predictor.preprocessor.csv_dtypes()
        self.fh, self.raw, self.compression = open_binary(path)  # gzip, bzip2, xz and zstd: read decompressed
        self.compressed = self.compression is not None
        try:
            with decompressing(path, self.compression):
                self._read_header(predictor)
        except BaseException:
            self.close()
            raise

    def position(self) -> int:
        """Bytes of the file itself read so far (of the compressed file, for a compressed one)."""
        return self.raw.tell()

    def _read_header(self, predictor: Any) -> None:
        path = self.path
        names = predictor.config.get("data", {}).get("column_names")
        first = self.fh.readline()
        if first.startswith(b"\xef\xbb\xbf"):
            first = first[3:]
        if b"\r" in first.rstrip(b"\r\n") and b'"' not in first:  # not a line: the whole file, or much of it
            raise UserError(f"{path}: lines end in a lone CR (old Mac line breaks); save it with LF or CRLF line breaks")
        if names:
            self.names, self.header, self.pending = list(names), None, first
        else:
            if not first.strip():
                raise UserError(f"input file is empty: {path}")
            self.header = first.rstrip(b"\r\n")
            try:
                self.names = pd.read_csv(io.BytesIO(first), nrows=0).columns.tolist()
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise UserError(f"{path}: cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None
            self.pending = b""
        missing = [c for c in predictor.columns if c not in self.names]
        if missing:
            raise UserError(f"{path}: missing columns the model reads: {', '.join(missing)}")

    def blocks(self, max_lines: int, buffers: int = 0) -> Iterator[tuple[memoryview, np.ndarray, bool]]:
        """``(block, ends, quoted)``: whole records, the offset just past each record's line break, and
        whether the block holds a quote character. A record is a line, or several where a quoted field
        holds line breaks. Blocks are views of the read buffer, not copies.

        ``buffers``: with 0 every read gets a fresh buffer; with k > 0 the buffers are reused round
        robin, so a block's bytes are overwritten k block-yielding reads later. The caller must be
        done with a block by then: when it asks for the next block, the blocks it still holds must
        come from fewer than k reads (score_file holds at most one block per scoring thread, and
        passes k = threads + 2). Reused buffers spare the kernel from handing out (and zeroing)
        fresh pages for every block of a large file."""
        rest = self.pending
        ring: list[Optional[bytearray]] = [None] * buffers
        used = 0  # reads that yielded blocks: only those move on to the next buffer
        while True:
            buf = self._buffer(ring, used, len(rest), self.block_bytes)
            buf[: len(rest)] = rest
            with decompressing(self.path, self.compression):
                got = self.fh.readinto(memoryview(buf)[len(rest):])
            if not got:
                if rest.strip():
                    tail = rest if rest.endswith(b"\n") else rest + b"\n"
                    quoted = b'"' in tail
                    ends = _record_ends(np.frombuffer(tail, dtype=np.uint8), quoted)
                    if not len(ends) or ends[-1] != len(tail):  # a quote left open: pandas will say so
                        ends = np.append(ends, len(tail))
                    yield from _split_lines(memoryview(tail), max_lines, quoted, ends)
                return
            end = len(rest) + got
            quoted = buf.find(b'"', 0, end) >= 0
            ends = _record_ends(np.frombuffer(buf, dtype=np.uint8, count=end), True) if quoted else None
            cut = (int(ends[-1]) if len(ends) else 0) if quoted else buf.rfind(b"\n", 0, end) + 1
            rest = bytes(buf[cut:end])  # a read that ends no record leaves no view of its buffer: it is reused
            if len(rest) > _MAX_RECORD_BYTES:
                raise UserError(f"{self.path}: a record runs on for more than {_MAX_RECORD_BYTES / 2**20:g} MB "
                                f"(a quote that is never closed?)")
            if cut:
                used += 1
                yield from _split_lines(memoryview(buf)[:cut], max_lines, quoted and buf.find(b'"', 0, cut) >= 0, ends)

    @staticmethod
    def _buffer(ring: list[Optional[bytearray]], used: int, keep: int, size: int) -> bytearray:
        """A buffer with room for ``keep`` carried-over bytes and a block's read (about ``size``) after them."""
        if not ring:
            return bytearray(keep + size)
        slot = used % len(ring)
        buf = ring[slot]
        if buf is None or len(buf) < keep + size // 2:  # first use, or a line longer than a block
            buf = ring[slot] = bytearray(keep + size)
        return buf

    def close(self) -> None:
        self.fh.close()
        self.raw.close()


def _record_ends(data: np.ndarray, quoted: bool) -> np.ndarray:
    """The offset just past each record's line break in ``data`` (which starts a record). With quotes
    (``quoted``), a line break inside a quoted field ends no record. Quotes are read as pandas reads
    them: a quote opens a quoted field only at the start of a field, ``""`` inside one is a quote,
    and any other quote is a plain character."""
    breaks = np.flatnonzero(data == 10)
    quotes = np.flatnonzero(data == 34) if quoted else ()
    if not len(quotes):
        return breaks + 1
    # Usually every quote opens a field (after a comma or a line break), closes one (before them) or
    # is half of a "" pair. Then a line break is inside quotes exactly when an odd number of quotes
    # come before it. Otherwise (a quote within a plain field) the quotes are walked one by one.
    before, after = data[np.maximum(quotes - 1, 0)], data[np.minimum(quotes + 1, len(data) - 1)]
    before[quotes == 0] = after[quotes == len(data) - 1] = 44  # the data's start and end bound fields too
    opening, closing = before[0::2], after[1::2]
    if (((opening == 44) | (opening == 10) | (opening == 34)).all()
            and ((closing == 44) | (closing == 10) | (closing == 13) | (closing == 34)).all()):
        inside = np.searchsorted(quotes, breaks) % 2 == 1
    else:
        inside = _inside_quotes(data, quotes, breaks)
    return breaks[~inside] + 1


def _inside_quotes(data: np.ndarray, quotes: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Which ``breaks`` lie inside quoted fields, walking the quotes in order as pandas does."""
    opens, closes = [], []
    i, n = 0, len(quotes)
    while i < n:
        p = int(quotes[i])
        if len(opens) == len(closes):  # outside quotes: an opening quote, or a quote within a plain field
            if p == 0 or data[p - 1] in (44, 10):
                opens.append(p)
            i += 1
        elif i + 1 < n and quotes[i + 1] == p + 1:  # "" within a quoted field
            i += 2
        else:
            closes.append(p)
            i += 1
    if not opens:
        return np.zeros(len(breaks), dtype=bool)
    if len(closes) < len(opens):
        closes.append(len(data))  # still open where the data ends
    last_open = np.searchsorted(np.asarray(opens), breaks) - 1
    return (last_open >= 0) & (np.asarray(closes)[np.maximum(last_open, 0)] > breaks)


def _split_lines(block: memoryview, max_lines: int, quoted: bool,
                 ends: Optional[np.ndarray] = None) -> Iterator[tuple[memoryview, np.ndarray, bool]]:
    """The block in pieces of at most ``max_lines`` records; ``ends``: its record ends, when known."""
    if ends is None:
        ends = _record_ends(np.frombuffer(block, dtype=np.uint8), quoted)
    if len(ends) <= max_lines:
        yield block, ends, quoted
        return
    for i in range(0, len(ends), max_lines):
        start = int(ends[i - 1]) if i else 0
        piece = ends[i: i + max_lines]
        view = block[start: int(piece[-1])]
        yield view, piece - start, quoted and bool((np.frombuffer(view, dtype=np.uint8) == 34).any())


def novelty_text(novelty: np.ndarray, prefix: str = "") -> np.ndarray:
    """A hybrid's novelty scores as text with SCORE_DECIMALS decimals (like ``score``; they are
    unbounded standardised values, so not fixed width)."""
    return np.char.add(prefix, np.char.mod(f"%.{SCORE_DECIMALS}f", np.asarray(novelty, dtype=np.float64)))


_DIGITS3 = np.array([[48 + i // 100, 48 + i // 10 % 10, 48 + i % 10] for i in range(1000)], dtype=np.uint8)


def score_text(scores: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """``,score,is_anomaly`` per row as fixed-width ASCII (uint8 rows), scores with SCORE_DECIMALS decimals."""
    n, d = len(scores), SCORE_DECIMALS
    fixed = np.rint(np.clip(scores.astype(np.float64), 0.0, 1.0) * 10.0 ** d).astype(np.int64)
    out = np.empty((n, d + 5), dtype=np.uint8)
    out[:, 0] = out[:, d + 3] = ord(",")
    out[:, 1] = 48 + fixed // 10 ** d
    out[:, 2] = ord(".")
    frac = fixed % 10 ** d
    for k in range(d // 3):  # three digits at a time (floor division by a constant is fast; % is not)
        high = frac // 1000
        out[:, d - 3 * k: d + 3 - 3 * k] = _DIGITS3[frac - high * 1000]
        frac = high
    out[:, d + 4] = 48 + flagged
    return out


class _ArrowBlocks:
    """The fast path for plain blocks (no quotes, every value parses to the model's column types):
    pyarrow parses the block, the predictor scores the encoded columns, and each input line is
    written back byte for byte with the new columns appended. Blocks are scored in worker threads,
    one block per thread, each stage single-threaded, so every core runs the whole pipeline. Any
    block it does not take (``score`` gives None) goes through pandas, which finds and explains the
    rows that cannot be scored."""

    def __init__(self, predictor: Any, names: list[str]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        self.pa, self.pc, self.pacsv = pa, pc, pacsv
        # glibc's allocator keeps freed blocks for the next block; pyarrow's default pool (mimalloc)
        # hands them back to the system, so every block page-faults its memory in again
        self.pool = pa.system_memory_pool()
        self.predictor, self.pre = predictor, predictor.preprocessor
        st = self.pre.state
        self.imputes = st.get("nan_policy", "error") in ("median", "zero")
        types = {c: pa.float64() for c in st["numeric"]["columns"]}
        types.update({c: pa.bool_() for c in st["boolean"]["columns"]})
        types.update({c: pa.dictionary(pa.int32(), pa.string()) for c in st["categorical"]["columns"]})
        self.names = names
        self.gap_codes = [self.pre.gap_code(i) for i in range(len(st["categorical"]["columns"]))]
        true, false = ["true", "t", "yes", "1"], ["false", "f", "no", "0"]
        # Numbers: only the empty field is a gap, and only for a model that imputes gaps (for one that
        # does not, a gap fails the parse, and pandas writes the row's reason). pandas' other missing
        # markers fail Arrow's number parse ("NA", "null", ...: the block goes to pandas) or parse as
        # NaN ("nan", "NaN"), which is a gap on both routes. Categories: a gap, or a value pandas
        # reads as one, gets the code the pandas route gives a gap (gap_codes).
        self.convert_options = pacsv.ConvertOptions(
            column_types=types, include_columns=[c for c in names if c in types], strings_can_be_null=True,
            null_values=[""] if self.imputes else [], true_values=[v for t in true for v in (t, t.upper(), t.title())],
            false_values=[v for f in false for v in (f, f.upper(), f.title())])
        self.parse_options = pacsv.ParseOptions(quote_char=False)  # blocks with quotes go to pandas

    def parse(self, block: memoryview, ends: np.ndarray, quoted: bool) -> Optional[Any]:
        """An Arrow table of the block, or None when pandas should read it."""
        if quoted:  # quoted fields may hold newlines: the line bookkeeping below would not hold
            return None
        try:
            # one parse block: one chunk per column, read without copying
            options = self.pacsv.ReadOptions(column_names=self.names, use_threads=False, block_size=len(block) + 1)
            table = self.pacsv.read_csv(self.pa.py_buffer(block), read_options=options, parse_options=self.parse_options,
                                        convert_options=self.convert_options, memory_pool=self.pool)
        except self.pa.ArrowInvalid:
            return None
        return table if table.num_rows == len(ends) else None  # blank lines: let pandas count the rows

    def encode(self, table: Any) -> Optional[Any]:
        st = self.pre.state
        cols = st["numeric"]["columns"]
        num = [table[c].to_numpy() for c in cols]
        # a gap the model does not impute: pandas explains it row by row. (A column's sum is finite
        # when all its values are; a sum overflowing to inf only sends the block the slow way.)
        if not self.imputes and not all(np.isfinite(np.add.reduce(x)) for x in num):
            return None
        booleans = []
        for c in st["boolean"]["columns"]:
            if table[c].null_count:
                return None
            booleans.append(table[c].to_numpy().astype(np.float32))
        codes = []
        for i, c in enumerate(st["categorical"]["columns"]):
            column = np.full(table.num_rows, self.gap_codes[i], dtype=np.int64)  # nulls: gaps
            start = 0
            for chunk in table[c].chunks:
                values = chunk.dictionary.to_pylist()
                lookup = self.pre.category_codes(i, values)
                lookup[[v in _PANDAS_NA for v in values]] = self.gap_codes[i]  # read as gaps by pandas
                idx = chunk.indices.to_numpy(zero_copy_only=False)
                if chunk.null_count:
                    valid = chunk.is_valid().to_numpy(zero_copy_only=False)
                    column[start: start + len(chunk)][valid] = lookup[idx[valid]]
                else:
                    np.take(lookup, idx, out=column[start: start + len(chunk)])
                start += len(chunk)
            codes.append(column)
        return self.pre.encode_arrays(num, booleans, codes, finite=not self.imputes)

    def score(self, block: memoryview, ends: np.ndarray, quoted: bool) -> Optional[tuple[list[Any], int]]:
        """The block's output (buffers to write in turn) and how many rows it flags, or None when
        pandas should read the block. Runs in a worker thread."""
        table = self.parse(block, ends, quoted)
        enc = self.encode(table) if table is not None else None
        if enc is None:
            return None
        if not np.isfinite(enc.dense).all():  # a value past float32 after scaling: pandas names the rows
            return None
        scores, novelty = self.predictor.score_encoded(enc)
        if not np.isfinite(scores).all():
            return None
        flagged = (scores >= self.predictor.threshold).astype(np.uint8)
        return self.lines(block, ends, score_text(scores, flagged), novelty), int(flagged.sum())

    def lines(self, block: memoryview, ends: np.ndarray, suffix: np.ndarray,
              novelty: Optional[np.ndarray]) -> list[Any]:
        """Each line of the block, byte for byte, with its suffix inserted before the line break."""
        pa, pc = self.pa, self.pc
        data = np.frombuffer(block, dtype=np.uint8)
        cr = (data[np.maximum(ends - 2, 0)] == 13) & (ends >= 2)  # keep CRLF line breaks as they are
        cuts = (ends - 1 - cr).astype(np.int32)
        offsets = np.concatenate([[0], cuts]).astype(np.int32)  # line i carries line i-1's break in front
        lines = pa.Array.from_buffers(pa.binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(block)])
        width = suffix.shape[1]
        parts = [lines, pa.Array.from_buffers(pa.binary(), len(ends), [
            None, pa.py_buffer(np.arange(0, (len(ends) + 1) * width, width, dtype=np.int32)),
            pa.py_buffer(np.ascontiguousarray(suffix))])]
        if novelty is not None:
            parts.append(pa.array(np.char.encode(novelty_text(novelty, ","), "ascii"), pa.binary()))
        joined = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.binary()), memory_pool=self.pool)
        offs = np.frombuffer(joined.buffers()[1], dtype=np.int32)[joined.offset: joined.offset + len(joined) + 1]
        return [joined.buffers()[2][int(offs[0]): int(offs[-1])], block[int(cuts[-1]):]]  # then the last line break


def _workers(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Scoring threads: one per core this process may use (its CPU affinity, and a container's CPU
    quota where cgroup v2 sets one), at most 8, so the blocks in flight stay small."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period) + 0.5)))
    except (OSError, ValueError):
        pass
    return max(1, min(cores, 8))


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Ask glibc's malloc to keep the memory of freed blocks for the next ones: allocations of up to
    ``mmap_threshold`` come from its heaps, and up to ``trim_threshold`` of free memory stays there.

    Each block of a file allocates some 35 MB (parsed columns, encoded features, output lines) and
    frees it again. With glibc's defaults part of that goes back to the kernel after every block and
    is faulted in (and zeroed) again by the next one: on the 1M-row file about 35,000 page faults
    against 22,000 with this setting, and a tenth of the run in kernel time. The setting is
    process-wide and cannot be undone, so the library never makes it on its own: ``predict.py`` (a
    process that only scores) does. Gives False, changing nothing, where the C library is not glibc."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold))) and bool(mallopt(m_trim_threshold, int(trim_threshold)))


# pandas' default missing-value markers: read as gaps by the pandas route
_PANDAS_NA = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"])


def _is_stream(path: Path, fd: int) -> bool:
    """``path`` is where file descriptor ``fd`` writes (``/dev/stdout``, ``/dev/fd/1``, or the file
    stdout is redirected to): writing must go through the descriptor, not a new file of that name."""
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _target(path: Path, input_path: Path, flag: str) -> tuple[Path, str]:
    """Where to write ``path`` and how: ``stdout`` / ``stderr`` (through the process's own stream),
    ``direct`` (a special file such as a pipe or ``/dev/null``, written as it is) or ``file`` (a new
    file, written under a temporary name and renamed into place; through a link, the link stays).
    Refused: the input file itself, however the path is spelt, and a folder."""
    if str(path) == "-" or _is_stream(path, 1):
        return Path("-"), "stdout"
    if _is_stream(path, 2):
        return path, "stderr"
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    real = Path(os.path.realpath(path))
    if path.exists():
        if os.path.samefile(path, input_path):
            raise UserError(f"{flag} {path} is the input file: scoring would overwrite the records; "
                            f"choose another output name")
        return (real, "file") if stat.S_ISREG(os.stat(path).st_mode) else (path, "direct")
    if real == Path(os.path.realpath(input_path)):
        raise UserError(f"{flag} {path} is the input file: choose another output name")
    return real, "file"


@contextmanager
def _opened(path: Path, kind: str) -> Iterator[Any]:
    """A binary writer: the process's stdout or stderr, a special file as it is, or a new file (``DirectWriter``)."""
    if kind in ("stdout", "stderr"):
        stream = (sys.stdout if kind == "stdout" else sys.stderr).buffer
        yield stream
        stream.flush()
    elif kind == "direct":
        with path.open("wb") as fh:
            yield fh
    else:
        with DirectWriter(path) as fh:
            yield fh


def score_file(model: str | Path | Any, input_path: str | Path, output_path: str | Path, *,
               rejects_path: Optional[str | Path] = None, chunk_size: int = 100_000,
               progress: bool = True) -> BatchResult:
    """Score ``input_path`` into ``output_path``; rejected rows go to ``rejects_path``
    (default: ``<output>.rejects.csv``, written only when there are any).

    Blocks of the file are parsed by pyarrow and scored in worker threads, one per core, and written
    in file order; a block with anything unusual (quotes, blank lines, values that do not parse, gaps the
    model does not impute) is read by pandas instead, row by row reasons and all. Either way the columns
    the model does not read are written back as they were. A new output file is written under a
    temporary name and renamed at the end, so a failed run leaves no half-written file under the final
    name; ``-`` (stdout) and special files such as ``/dev/stdout`` are written directly. Compressed inputs
    (gzip, bzip2, xz, zstd) are read as they are."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    predictor = load_predictor(model) if isinstance(model, (str, Path)) else model
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise UserError(f"input file not found: {input_path}")
    if input_path.stat().st_size == 0:
        raise UserError(f"input file is empty: {input_path}")
    if chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    output_path, out_kind = _target(output_path, input_path, "--output")
    out_direct = out_kind != "file"
    given_rejects = rejects_path
    if rejects_path:
        rejects_path = Path(rejects_path)
    elif out_direct:  # beside a stream there is no file name to derive one from
        rejects_path = Path(input_path.with_suffix(".rejects.csv").name)
    else:
        rejects_path = output_path.with_suffix(".rejects.csv")
    rejects_path, rej_kind = _target(rejects_path, input_path, "--rejects")
    rej_direct = rej_kind != "file"
    if rej_kind in ("stdout", "stderr") or (out_kind == rej_kind and os.path.realpath(rejects_path) ==
                                            os.path.realpath(output_path)):
        raise UserError(f"--rejects {given_rejects or rejects_path}: the rejected rows need a file of their own, "
                        f"not the output or a terminal stream")
    start = time.perf_counter()
    workers = _workers()
    source = _Source(input_path, predictor, block_bytes(input_path.stat().st_size, workers))
    try:
        fast = _ArrowBlocks(predictor, source.names)
    except BaseException:
        source.close()
        raise
    extra = ["score", "is_anomaly"] + (["novelty_score"] if predictor.novelty is not None else [])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=input_path.stat().st_size, unit="B", unit_scale=True, desc="scoring", disable=None)
    n_rows = n_rejected = n_flagged = 0
    wrote_rej = False
    imputes = predictor.preprocessor.state.get("nan_policy", "error") in ("median", "zero")
    imputed: dict[str, int] = {}
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per scoring thread
    writing = output_path  # which file an error without a file name is about (a stream, a special file)
    try:
        with ExitStack() as files:  # a new file goes in place only when the whole run succeeded (atomic_target)
            out = files.enter_context(_opened(output_path if out_direct else
                                              files.enter_context(atomic_target(output_path)), out_kind))
            pool = files.enter_context(ThreadPoolExecutor(workers))
            rej = None
            header = source.header if source.header is not None else ",".join(source.names).encode()
            out.write(header + ("," + ",".join(extra) + "\n").encode())
            in_flight: deque = deque()

            def finish_oldest() -> None:
                """Write the oldest block in flight: its scored lines, or its rows through pandas."""
                nonlocal n_rows, n_rejected, n_flagged, wrote_rej, rej, writing
                block, lines, future = in_flight.popleft()
                done = future.result()
                if done is not None:
                    parts, flagged_count = done
                    for part in parts:
                        out.write(part)
                    n_flagged += flagged_count
                    n_rows += lines
                else:
                    raw, chunk, misshapen = _read_block(block, source, predictor.columns, n_rows)
                    row_numbers = np.arange(n_rows, n_rows + len(chunk)) + 1  # 1-based data rows
                    reasons = predictor.preprocessor.row_problems(chunk)
                    reasons[misshapen != ""] = misshapen[misshapen != ""]
                    if imputes:  # as in training: a cell that is not a number is a gap, and said so at the end
                        for col, count in predictor.preprocessor.unparsable_numbers(chunk[reasons == ""]).items():
                            imputed[col] = imputed.get(col, 0) + count
                    good_rows = np.flatnonzero(reasons == "")
                    if len(good_rows):
                        scores, novelty = predictor.score_with_novelty(chunk.iloc[good_rows])
                        broken = ~np.isfinite(scores)  # values far outside the training range
                        reasons[good_rows[broken]] = "score overflowed: values far outside the training range"
                        good_rows, scores = good_rows[~broken], scores[~broken]
                        novelty = novelty[~broken] if novelty is not None else None
                    if len(good_rows):
                        flagged = (scores >= predictor.threshold).astype(np.uint8)
                        # the fast path's fixed-point text, without its commas and flag
                        text = score_text(scores, flagged)[:, 1: SCORE_DECIMALS + 3].copy().view(
                            f"S{SCORE_DECIMALS + 2}").ravel().astype(str)
                        scored = raw.iloc[good_rows].assign(score=text, is_anomaly=flagged)
                        if novelty is not None:  # a hybrid: the novelty detector's own score too
                            scored = scored.assign(novelty_score=novelty_text(novelty))
                        out.write(scored.to_csv(index=False, header=False).encode("utf-8", "surrogateescape"))
                        n_flagged += int(flagged.sum())
                    bad = reasons != ""
                    if bad.any():
                        if rej is None:
                            writing = rejects_path
                            tmp_rej = rejects_path if rej_direct else files.enter_context(atomic_target(rejects_path))
                            rej = files.enter_context(open(tmp_rej, "w", newline="", encoding="utf-8",
                                                           errors="surrogateescape"))
                        rejected = raw[bad].assign(row=row_numbers[bad], reason=reasons[bad])
                        rejected.to_csv(rej, index=False, header=not wrote_rej)
                        wrote_rej = True
                        n_rejected += int(bad.sum())
                        writing = output_path
                    n_rows += len(chunk)
                if bar is not None:
                    bar.update(source.position() - bar.n if source.compressed else len(block))

            # blocks are read here and scored in the pool; they are written in file order, and at
            # most one block per thread waits beside the ones being scored
            for block, ends, quoted in source.blocks(chunk_size, buffers=workers + 2):
                in_flight.append((block, len(ends), pool.submit(fast.score, block, ends, quoted)))
                if len(in_flight) > workers:
                    finish_oldest()
            while in_flight:
                finish_oldest()
        if not wrote_rej and not rej_direct and rejects_path.is_file():
            rejects_path.unlink()  # an earlier run's rejects would read as this run's
    except OSError as exc:
        if os_error_line(exc) is None:
            raise
        raise UserError(os_error_line(exc, exc.filename or writing)) from None
    finally:
        torch.set_num_threads(torch_threads)
        source.close()
        if bar is not None:
            bar.close()
    return BatchResult(output_path, rejects_path if wrote_rej else None, n_rows, n_rows - n_rejected, n_rejected,
                       n_flagged, time.perf_counter() - start, direct=out_kind in ("stdout", "stderr"),
                       imputed_non_numbers=imputed)


_SPARE_FIELDS = 8  # fields past the header's that a record may carry and still be rejected row by row


def _read_block(block: bytes, source: _Source, columns: list[str],
                rows_before: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """``(raw, model_rows, misshapen)``: every field of the block as the text it was (written back
    unchanged), the model's columns as pandas reads them (its missing-value markers as gaps, categories
    as text), and why a record cannot be read ('' where it can: more fields than the header's)."""
    spare = [f"\0spare{i}" for i in range(_SPARE_FIELDS)]
    try:
        # bytes that are not UTF-8 (a latin-1 file) survive as surrogates and are written back as they were
        raw = pd.read_csv(io.BytesIO(block), header=None, names=source.names + spare, dtype=object,
                          keep_default_na=False, index_col=False, low_memory=False, encoding_errors="surrogateescape")
    except pd.errors.ParserError as exc:
        text = str(exc).splitlines()[0]
        found = re.search(r"Expected \d+ fields in line (\d+), saw (\d+)", text)
        if found:
            raise UserError(f"{source.path}: data row {rows_before + int(found.group(1))} (or near it) has "
                            f"{found.group(2)} fields, the header {len(source.names)}") from None
        raise UserError(f"{source.path}: cannot be parsed as CSV ({text})") from None
    # a record with fields past the header's (beyond empty ones, as a trailing comma makes) is rejected; one
    # with fewer reads as gaps in the missing fields, as before
    extra = (raw[spare].fillna("") != "").any(axis=1).to_numpy()
    misshapen = np.full(len(raw), "", dtype=object)
    misshapen[extra] = f"has more fields than the header's {len(source.names)}"
    raw = raw[source.names].fillna("")
    model = raw[columns].copy()
    for col in columns:
        values = model[col]
        model[col] = values.where(~values.isin(_PANDAS_NA), np.nan)
    return raw, model, misshapen
