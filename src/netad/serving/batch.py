"""Batch scoring (predict.py): a CSV of records in, the same rows plus ``score`` and ``is_anomaly`` out.

pyarrow's streaming CSV reader reads the file in blocks, so memory stays flat however large it is.
Rows that cannot be scored (a non-number in a numeric column, a missing value the model does not
impute, ...) go to a rejects file with their row number and the reason; every other row is scored.
No label column is needed; any extra column is passed through with its values unchanged.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import torch

from netad.data.compression import decompressing, open_binary
from netad.data.preprocessing import parse_boolean
from netad.errors import UserError, os_error_line
from netad.inference import load_predictor
from netad.io import atomic_target
from netad.serving import plain_blocks
from netad.serving.plain_blocks import BlockSplitter, PlainBlock


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
    files: int = 1  # input files scored (a folder or a glob: several, written into the output folder)

    @property
    def rows_per_second(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else float("nan")


_MAX_BLOCK_BYTES = 4 << 20  # CSV text the reader parses at a time; also the longest record it can read
_MIN_BLOCK_BYTES = 1 << 20  # smaller files are read in blocks of this size or more
_SPARE_FIELDS = 8  # fields past the header's that a record may carry and still be rejected row by row
SCORE_DECIMALS = 9  # written scores: fixed point, enough for float32 scores in [0, 1]

# pandas' default missing-value markers: gaps in the model's columns, as everywhere else in the toolkit
_PANDAS_NA = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"])
_PLAIN = pacsv.WriteOptions(include_header=False, quoting_style="none")  # values as they were read
_QUOTED = pacsv.WriteOptions(include_header=False, quoting_style="needed")  # every text value quoted
_FLAG_TEXT = pa.array(["0", "1"])


def block_bytes(file_size: int, workers: int) -> int:
    """Bytes the reader parses per block: _MAX_BLOCK_BYTES, or less for a small file, so it still gives
    each scoring thread two blocks."""
    return max(_MIN_BLOCK_BYTES, min(_MAX_BLOCK_BYTES, file_size // (2 * workers)))


def scoring_threads(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
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


def score_text(scores: np.ndarray) -> pa.Array:
    """Scores as text with SCORE_DECIMALS decimals, as printf's ``%.9f`` writes them after clipping to
    [0, 1]: the fixed-point integer's two parts formatted by pyarrow. (numpy's and Python's float
    formatting take about 2 µs a value: longer than scoring the row.)"""
    unit = 10 ** SCORE_DECIMALS
    fixed = np.rint(np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0) * unit).astype(np.int64)
    whole = fixed // unit
    fraction = pc.utf8_lpad(pa.array(fixed - whole * unit).cast(pa.string()), SCORE_DECIMALS, "0")
    return pc.binary_join_element_wise(pa.array(whole).cast(pa.string()), fraction, ".")


def novelty_text(novelty: np.ndarray) -> pa.Array:
    """A hybrid's novelty scores as text with SCORE_DECIMALS decimals (like ``score``; they are
    unbounded standardised values, so not fixed width)."""
    return pa.array(np.char.mod(f"%.{SCORE_DECIMALS}f", np.asarray(novelty, dtype=np.float64)), pa.string())


def csv_lines(table: pa.Table) -> pa.Buffer:
    """``table`` as CSV lines: values as they are, or, where one holds a comma, a quote or a line break,
    every text value of the table quoted."""
    sink = pa.BufferOutputStream()
    try:
        pacsv.write_csv(table, sink, _PLAIN)
    except pa.ArrowInvalid:  # pyarrow quotes all text or none
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, _QUOTED)
    return sink.getvalue()


def _texts(column: pa.ChunkedArray) -> np.ndarray:
    """A text column as Python strings; bytes that are not UTF-8 (a latin-1 file) as surrogates."""
    try:
        return column.to_numpy(zero_copy_only=False)
    except (pa.ArrowException, UnicodeDecodeError):
        return np.array([b.decode("utf-8", "surrogateescape") for b in column.cast(pa.binary()).to_pylist()],
                        dtype=object)


@dataclass
class _Piece:
    """Rows of the file to score together: every column as text (or, from a plain block, the model's
    columns typed and ``lines``, the rows' lines as read), each row's 1-based data-row number, and why
    a row cannot be read (None: every row can; else '' where it can)."""

    table: pa.Table
    rows: np.ndarray
    misshapen: Optional[np.ndarray] = None
    lines: Optional[pa.Array] = None


class _Records:
    """A stream of whole records read by pyarrow's streaming CSV reader, every column as text (bytes
    that are not UTF-8 included), as pieces in file order, numbered from data row ``first_row``. A
    record with another number of fields than the header's is set aside by the reader and put back in
    its place here: one with fewer reads as gaps in the missing fields, one with more is marked for
    rejection."""

    def __init__(self, stream: Any, source: "_Source", first_row: int) -> None:
        self.source, self.names, self.first_row = source, source.names, first_row
        self.set_aside: list[tuple[Optional[int], int, str]] = []  # (data row, fields, text) from the reader
        self.waiting: deque = deque()  # set-aside records not yet put back: (data row, fields, reason)
        self.last: Optional[pa.Table] = None  # the last records read
        self.reader = self._open(stream)

    def _open(self, stream: Any) -> Optional[pacsv.CSVStreamingReader]:
        def set_aside(row: Any) -> str:
            self.set_aside.append((row.number, row.actual_columns, row.text))
            return "skip"

        try:
            with decompressing(self.source.path, self.source.compression):
                return pacsv.open_csv(
                    stream,
                    # one thread: the reader numbers the records it sets aside only when it parses in order
                    read_options=pacsv.ReadOptions(column_names=self.names, use_threads=False,
                                                   block_size=self.source.block_size),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=set_aside),
                    convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in self.names},
                                                         check_utf8=False, strings_can_be_null=False))
        except pa.ArrowInvalid as exc:
            if str(exc).startswith("Empty CSV file"):  # no records
                return None
            raise self._error(exc, self.first_row) from None

    def _error(self, exc: Exception, next_row: int) -> UserError:
        text, path = str(exc).splitlines()[0], self.source.path
        if "straddles" in text:  # a record longer than a block
            return UserError(f"{path}: a record at or after data row {next_row} runs on for more than "
                             f"{self.source.block_size / 2**20:g} MB (a quote that is never closed?)")
        return UserError(f"{path}: cannot be parsed as CSV ({text})")

    def _misfits(self) -> list[tuple[int, list[str], str]]:
        """The records the reader set aside since the last call: (data row, fields, why it is rejected)."""
        width, out = len(self.names), []
        for number, count, text in self.set_aside:
            if number is None:
                raise RuntimeError("pyarrow's CSV reader gave no row number for a record it set aside")
            number += self.first_row - 1
            if count > width + _SPARE_FIELDS:
                raise UserError(f"{self.source.path}: data row {number} has {count} fields, the header {width}")
            try:
                fields = next(csv.reader(io.StringIO(text), strict=True), [])
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise UserError(f"{self.source.path}: data row {number}: a quote is never closed (the record "
                                    f"runs on to the end of the file)") from None
                fields = next(csv.reader(io.StringIO(text)), [])
            extra = any(fields[width:])  # fields past the header's that hold something (not a trailing comma's)
            out.append((number, (fields + [""] * width)[:width],
                        f"has more fields than the header's {width}" if extra else ""))
        self.set_aside.clear()
        return out

    def pieces(self, max_rows: int) -> Iterator[_Piece]:
        """The records in pieces of at most ``max_rows`` (each within one block), in file order."""
        next_row = self.first_row
        while True:
            batch = self._next_batch(next_row)
            block = self._with_misfits(batch, next_row)
            if block is None:
                if batch is None:  # the end of the stream
                    return
                continue
            table, rows, misshapen = block
            next_row, self.last = int(rows[-1]) + 1, table
            for start in range(0, table.num_rows, max_rows):
                reasons = None if misshapen is None else misshapen[start: start + max_rows]
                yield _Piece(table.slice(start, max_rows), rows[start: start + max_rows],
                             reasons if reasons is not None and reasons.any() else None)

    def _next_batch(self, next_row: int) -> Optional[pa.RecordBatch]:
        """The reader's next block, or None at the end of the stream."""
        if self.reader is None:
            return None
        try:
            with decompressing(self.source.path, self.source.compression):
                return self.reader.read_next_batch()
        except StopIteration:
            self.reader = None
            return None
        except pa.ArrowInvalid as exc:
            raise self._error(exc, next_row) from None

    def _with_misfits(self, batch: Optional[pa.RecordBatch],
                      next_row: int) -> Optional[tuple[pa.Table, np.ndarray, Optional[np.ndarray]]]:
        """``(table, data-row numbers, reasons)``: the batch's records, and the set-aside records that
        belong among or right after them (at the end of the stream, all that are left), in file order;
        None when there are none."""
        self.waiting.extend(self._misfits())
        m = 0 if batch is None else batch.num_rows
        table = pa.Table.from_batches([batch]) if m else None
        if not self.waiting:
            return None if table is None else (table, np.arange(next_row, next_row + m), None)
        # the batch's records take the next m row numbers that no set-aside record holds
        held = np.array([w[0] for w in self.waiting])
        rows = np.arange(next_row, next_row + m + len(held))
        rows = rows[~np.isin(rows, held)][:m]
        end = int(rows[-1]) if m else next_row - 1
        placed = []
        while self.waiting and (batch is None or self.waiting[0][0] <= end + 1):
            placed.append(self.waiting.popleft())
            end = max(end, placed[-1][0])
        if not placed:
            return None if table is None else (table, rows, None)
        extra = pa.table({c: pa.array([p[1][i] for p in placed], pa.string()) for i, c in enumerate(self.names)})
        table = extra if table is None else pa.concat_tables([table, extra])
        rows = np.concatenate([rows, [p[0] for p in placed]]).astype(np.int64)
        misshapen = np.array([""] * m + [p[2] for p in placed], dtype=object)
        order = np.argsort(rows, kind="stable")
        return table.take(order), rows[order], misshapen[order]


class _Source:
    """The input file as plain blocks (:mod:`netad.serving.plain_blocks`) while its text allows, then
    as pieces of whole records from pyarrow's streaming CSV reader (:class:`_Records`), in file order.
    The column names come from the header line, or from the model's config for headerless data."""

    def __init__(self, path: Path, predictor: Any, block_size: int) -> None:
        self.path, self.block_size = path, block_size
        self.fh, self.raw, self.compression = open_binary(path)  # gzip, bzip2, xz and zstd: read decompressed
        self.compressed = self.compression is not None
        try:
            with decompressing(path, self.compression):
                self._read_header(predictor)
        except BaseException:
            self.close()
            raise
        st = predictor.preprocessor.state
        text = pa.dictionary(pa.int32(), pa.string())
        self.types = {c: pa.float64() for c in st["numeric"]["columns"]} | {
            c: text for c in st["boolean"]["columns"] + st["categorical"]["columns"]}

    def position(self) -> int:
        """Bytes of the file itself read so far (of the compressed file, for a compressed one)."""
        return self.raw.tell()

    def _read_header(self, predictor: Any) -> None:
        path = self.path
        names = predictor.config.get("data", {}).get("column_names")
        if names:  # headerless: the reader starts at the first record
            self.names, self.header = list(names), None
        else:
            first = self.fh.readline()
            if first.startswith(b"\xef\xbb\xbf"):
                first = first[3:]
            if b"\r" in first.rstrip(b"\r\n") and b'"' not in first:  # not a line: the whole file, or much of it
                raise UserError(f"{path}: lines end in a lone CR (old Mac line breaks); "
                                f"save it with LF or CRLF line breaks")
            if not first.strip():
                raise UserError(f"input file is empty: {path}")
            self.header = first.rstrip(b"\r\n")
            try:
                self.names = pd.read_csv(io.BytesIO(first), nrows=0).columns.tolist()
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise UserError(f"{path}: cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None
        missing = [c for c in predictor.columns if c not in self.names]
        if missing:
            raise UserError(f"{path}: missing columns the model reads: {', '.join(missing)}")

    def items(self, max_rows: int) -> Iterator[PlainBlock | _Piece]:
        """The file's records in file order: plain blocks, then pieces of at most ``max_rows``."""
        splitter = BlockSplitter(self.fh, self.block_size, skip_bom=self.header is None)
        while True:
            with decompressing(self.path, self.compression):
                block = splitter.next_block()
            if block is None:
                break
            yield block
        if splitter.done:
            return
        records = _Records(splitter.rest(), self, splitter.rows + 1)
        yield from records.pieces(max_rows)
        self._check_closed(records.last)

    def block_pieces(self, block: PlainBlock, max_rows: int) -> list[_Piece]:
        """A plain block's records as pieces of text, as the streaming reader gives them."""
        return list(_Records(pa.BufferReader(block.data), self, block.first_row).pieces(max_rows))

    def _check_closed(self, last: Optional[pa.Table]) -> None:
        """A quote opened in the last field of the last record and never closed: the reader makes the rest
        of the file that field's value. Then the value holds a line break and the file does not end with
        the closing quote (checked on plain files)."""
        if last is None or self.compressed or not last.num_rows:
            return
        value = last.column(last.num_columns - 1)[last.num_rows - 1].as_buffer()
        if value is None or (b"\n" not in value.to_pybytes() and b"\r" not in value.to_pybytes()):
            return
        with self.path.open("rb") as fh:
            fh.seek(max(0, self.path.stat().st_size - 3))
            tail = fh.read().rstrip(b"\r\n")
        if not tail.endswith(b'"'):
            raise UserError(f"{self.path}: the last record's quote is never closed (its last field runs on to "
                            f"the end of the file)")

    def close(self) -> None:
        self.fh.close()
        self.raw.close()


@dataclass
class Done:
    """A scored piece: its output (CSV lines; a table on the columnar route), its rejected rows (the same), and
    counts."""

    out: Optional[Any]
    rejects: Optional[Any]
    n_rows: int
    n_flagged: int
    n_rejected: int
    imputed: dict[str, int]

    @staticmethod
    def merge(parts: list["Done"]) -> "Done":
        """Pieces scored one after another, as one."""
        if len(parts) == 1:
            return parts[0]
        outs = [p.out for p in parts if p.out is not None]
        rejects = [p.rejects for p in parts if p.rejects is not None]
        imputed: dict[str, int] = {}
        for p in parts:
            for col, count in p.imputed.items():
                imputed[col] = imputed.get(col, 0) + count
        return Done(pa.py_buffer(b"".join(outs)) if outs else None,
                     pa.py_buffer(b"".join(rejects)) if rejects else None, sum(p.n_rows for p in parts),
                     sum(p.n_flagged for p in parts), sum(p.n_rejected for p in parts), imputed)


class Tally:
    """Counts over the pieces of a run, in the order they are written."""

    def __init__(self) -> None:
        self.n_rows = self.n_flagged = self.n_rejected = 0
        self.imputed: dict[str, int] = {}

    def add(self, done: Done) -> None:
        self.n_rows += done.n_rows
        self.n_flagged += done.n_flagged
        self.n_rejected += done.n_rejected
        for col, count in done.imputed.items():
            self.imputed[col] = self.imputed.get(col, 0) + count


def _csv_field(text: str) -> str:
    """``text`` as one CSV field: quoted (quotes doubled) where it holds a comma, a quote or a line break."""
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\r\n') else text


class Explanations:
    """The ``--explain K`` columns: for a hybrid ``explained_by`` (the part that fired), then for each of the
    row's K largest contributions ``why_<i>`` (the input column) and ``why_<i>_contribution`` (logit units,
    or the column's share of the novelty score when the novelty part explains the row). With ``flagged_only``
    the rows below the threshold get empty fields (and cost nothing)."""

    def __init__(self, predictor: Any, k: int, *, flagged_only: bool = False, method: Optional[str] = None) -> None:
        from netad.inference.explain import Explainer

        self.explainer = Explainer(predictor, method)
        n = len(self.explainer.columns)
        if not 1 <= k <= n:
            raise UserError(f"--explain {k}: must be between 1 and {n} (the columns the model reads)")
        self.k, self.flagged_only, self.hybrid = k, flagged_only, predictor.novelty is not None
        self.names = (["explained_by"] if self.hybrid else []) + \
            [name for i in range(1, k + 1) for name in (f"why_{i}", f"why_{i}_contribution")]
        self._columns = {False: np.array(self.explainer.columns, dtype=object),
                         True: np.array([_csv_field(c) for c in self.explainer.columns], dtype=object)}

    def fields(self, enc: Any, flagged: np.ndarray, *, csv: bool = False) -> list[pa.Array]:
        """One text array per column of :attr:`names`; ``csv``: as CSV text (column names quoted where needed)."""
        n = len(flagged)
        rows = np.flatnonzero(flagged) if self.flagged_only else None
        if rows is not None and not len(rows):
            return [pa.array(np.full(n, "", dtype=object), pa.string()) for _ in self.names]
        e = self.explainer.explain_encoded(enc if rows is None else enc.take(rows))
        index, values = e.top(self.k)

        def spread(texts: pa.Array) -> pa.Array:
            if rows is None:
                return texts
            full = np.full(n, "", dtype=object)
            full[rows] = texts.to_numpy(zero_copy_only=False)
            return pa.array(full, pa.string())

        out = [spread(pa.array(e.explained_by, pa.string()))] if self.hybrid else []
        names = self._columns[csv]
        for i in range(self.k):
            out.append(spread(pa.array(names[index[:, i]], pa.string())))
            out.append(spread(pa.array(np.round(values[:, i].astype(np.float64), 6)).cast(pa.string())))
        return out


class Scorer:
    """Scores pieces of the file; runs in the scoring threads. :meth:`fast` encodes the parsed columns
    with pyarrow and the preprocessor's shared encoder; a piece it does not take (a value that does not
    parse to the model's types, a gap the model does not impute, a misshapen record) goes through
    :meth:`checked`, pandas and the preprocessor's row checks, which find and name the rows that cannot
    be scored. Either way the rows are written back with the values they were read with."""

    def __init__(self, predictor: Any, explanations: Optional["Explanations"] = None) -> None:
        self.predictor, self.pre = predictor, predictor.preprocessor
        self.explanations = explanations
        st = self.pre.state
        self.imputes = st.get("nan_policy", "error") in ("median", "zero")
        self.numeric, self.boolean = st["numeric"]["columns"], st["boolean"]["columns"]
        self.categorical = st["categorical"]["columns"]
        self.gap_codes = [self.pre.gap_code(i) for i in range(len(self.categorical))]
        self.extra = ["score", "is_anomaly"] + (["novelty_score"] if predictor.novelty is not None else []) + \
            (explanations.names if explanations is not None else [])

    def score(self, piece: _Piece) -> Done:
        done = self.fast(piece)
        return done if done is not None else self.checked(piece)

    def score_block(self, block: PlainBlock, source: "_Source", max_rows: int) -> Done:
        """A plain block in pieces of at most ``max_rows``: the model's columns parsed typed and
        scored by :meth:`fast`, each line written back as it was read; a block it does not take
        goes through the streaming reader's pieces of text, as the rest of the file would."""
        table = plain_blocks.parse(block, source.names, source.types)
        if table is not None:
            dones = []
            for start in range(0, block.n_rows, max_rows):
                stop = min(start + max_rows, block.n_rows)
                done = self.fast(_Piece(table.slice(start, stop - start), np.arange(start, stop) + block.first_row,
                                        lines=plain_blocks.lines(block, start, stop)))
                if done is None:
                    break
                dones.append(done)
            else:
                return Done.merge(dones)
        return Done.merge([self.score(piece) for piece in source.block_pieces(block, max_rows)])

    # ------------------------------------------------------------ pyarrow
    def _numbers(self, column: pa.ChunkedArray) -> Optional[np.ndarray]:
        """A numeric column as float64 (NaN for gaps the model imputes), or None when a value does not parse."""
        try:
            values = column.cast(pa.float64())
        except pa.ArrowInvalid:
            if not self.imputes:
                return None
            try:  # an empty field is a gap the model imputes
                values = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column).cast(pa.float64())
            except pa.ArrowInvalid:
                return None
        x = values.to_numpy()
        if not self.imputes and not np.isfinite(x).all():
            return None
        return x

    def _lookup(self, column: pa.ChunkedArray, table: Any) -> Optional[np.ndarray]:
        """``table(texts)`` applied to each distinct value of a text column, then spread over the rows;
        None where ``table`` gives None (a value the fast path does not take)."""
        encoded = pc.dictionary_encode(column.combine_chunks())
        values = table(_texts(encoded.dictionary))
        if values is None:
            return None
        return values[encoded.indices.to_numpy(zero_copy_only=False)]

    @staticmethod
    def _boolean_table(texts: np.ndarray) -> Optional[np.ndarray]:
        """0/1 for each text of a boolean column; None when one is not a boolean (pandas names it)."""
        flags = [parse_boolean(t) for t in texts]
        return None if None in flags else np.array(flags, dtype=np.float32)

    def _category_table(self, i: int, texts: np.ndarray) -> np.ndarray:
        """The one-hot position of each text of categorical column ``i``; pandas' gaps get a gap's."""
        codes = self.pre.category_codes(i, texts)
        codes[np.array([t in _PANDAS_NA for t in texts], dtype=bool)] = self.gap_codes[i]
        return codes

    def encode(self, table: pa.Table) -> Optional[Any]:
        """The piece through the preprocessor's shared encoder, or None when pandas should read it."""
        numeric = []
        for c in self.numeric:
            x = self._numbers(table.column(c))
            if x is None:
                return None
            numeric.append(x)
        booleans = []
        for c in self.boolean:
            b = self._lookup(table.column(c), self._boolean_table)
            if b is None:
                return None
            booleans.append(b)
        codes = [self._lookup(table.column(c), partial(self._category_table, i))
                 for i, c in enumerate(self.categorical)]
        return self.pre.encode_arrays(numeric, booleans, codes, finite=not self.imputes)

    def fast(self, piece: _Piece) -> Optional[Done]:
        """The piece scored from its parsed columns, or None when pandas should read it."""
        if piece.misshapen is not None:  # records to reject among its rows
            return None
        table = piece.table
        enc = self.encode(table)
        if enc is None or not np.isfinite(enc.dense).all():  # a value past float32 after scaling: pandas names it
            return None
        scores, novelty = self.predictor.score_encoded(enc)
        if not np.isfinite(scores).all():
            return None
        flagged = scores >= self.predictor.threshold
        if piece.lines is None:
            why = self.explanations.fields(enc, flagged) if self.explanations is not None else []
            out = self.lines(table, scores, flagged, novelty, why)
        else:  # the lines as read, the scores (and explanations, as CSV text) joined on
            fields = [score_text(scores), _FLAG_TEXT.take(pa.array(flagged.view(np.int8)))]
            fields += [novelty_text(novelty)] if novelty is not None else []
            fields += self.explanations.fields(enc, flagged, csv=True) if self.explanations is not None else []
            out = plain_blocks.with_fields(piece.lines, fields)
        return Done(out, None, table.num_rows, int(flagged.sum()), 0, {})

    def lines(self, table: pa.Table, scores: np.ndarray, flagged: np.ndarray,
              novelty: Optional[np.ndarray], why: list[pa.Array]) -> pa.Buffer:
        """The rows as CSV lines, the scores (and explanations) appended."""
        columns = [*table.columns, score_text(scores), pa.array(flagged.astype(np.uint8))]
        if novelty is not None:  # a hybrid: the novelty detector's own score too
            columns.append(novelty_text(novelty))
        return csv_lines(pa.Table.from_arrays(columns + why, names=table.column_names + self.extra))

    # ------------------------------------------------------------ pandas
    def frame(self, table: pa.Table) -> pd.DataFrame:
        """The model's columns as pandas reads them elsewhere: text, with pandas' missing-value markers as gaps."""
        frame = pd.DataFrame({c: _texts(table.column(c)) for c in self.predictor.columns}, dtype=object)
        return frame.where(~frame.isin(list(_PANDAS_NA)), np.nan)

    def checked(self, piece: _Piece) -> Done:
        """The piece through pandas: each row scored, or rejected with the reason."""
        table = piece.table
        rows = self.checked_rows(table, piece.misshapen)
        out = self.lines(table.take(rows.good), rows.scores, rows.flagged, rows.novelty, rows.why) \
            if len(rows.good) else None
        rejects = None
        if len(rows.bad):
            rejected = table.take(rows.bad).append_column("row", pa.array(piece.rows[rows.bad])).append_column(
                "reason", pa.array(rows.reasons[rows.bad].tolist(), pa.string()))
            rejects = csv_lines(rejected)
        return Done(out, rejects, table.num_rows, int(rows.flagged.sum()), len(rows.bad), rows.imputed)

    def checked_rows(self, table: pa.Table, misshapen: Optional[np.ndarray] = None) -> "CheckedRows":
        """The model's columns of ``table`` through pandas and the preprocessor's row checks: which rows are
        scored (and their scores), which are not and why. ``misshapen``: reasons already known ('' elsewhere)."""
        frame = self.frame(table)
        reasons = self.pre.row_problems(frame)
        if misshapen is not None:
            reasons[misshapen != ""] = misshapen[misshapen != ""]
        imputed = self.pre.unparsable_numbers(frame[reasons == ""]) if self.imputes else {}
        good = np.flatnonzero(reasons == "")
        scores, flagged, novelty, why = np.zeros(0, np.float32), np.zeros(0, bool), None, []
        if len(good):
            enc = self.pre.encode(frame.iloc[good][self.predictor.columns])
            scores, novelty = self.predictor.score_encoded(enc)
            broken = ~np.isfinite(scores)  # values far outside the training range
            reasons[good[broken]] = "score overflowed: values far outside the training range"
            good, scores = good[~broken], scores[~broken]
            novelty = novelty[~broken] if novelty is not None else None
            flagged = scores >= self.predictor.threshold
            if len(good) and self.explanations is not None:
                why = self.explanations.fields(enc.take(~broken), flagged)
        return CheckedRows(good, scores, flagged, novelty, why, reasons, np.flatnonzero(reasons != ""), imputed)


@dataclass
class CheckedRows:
    """What :meth:`Scorer.checked_rows` found: the rows scored (``good``) with their scores, flags, novelty
    scores and explanation fields, each row's reason ('' when scored), the rows not scored (``bad``), and the
    cells that were not numbers but imputed."""

    good: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    novelty: Optional[np.ndarray]
    why: list[pa.Array]
    reasons: np.ndarray
    bad: np.ndarray
    imputed: dict[str, int]


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


def _open_file(path: Path) -> BinaryIO:
    """A file to write (buffered)."""
    return open(path, "wb")


@contextmanager
def _opened(path: Path, kind: str) -> Iterator[BinaryIO]:
    """A binary writer: the process's stdout or stderr, or ``path`` (a special file, or a new file's
    temporary name)."""
    if kind in ("stdout", "stderr"):
        stream = (sys.stdout if kind == "stdout" else sys.stderr).buffer
        yield stream
        stream.flush()
    else:
        with _open_file(path) as fh:
            yield fh


def _header_line(names: list[str]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(names)
    return text.getvalue().encode("utf-8", "surrogateescape")


def score_file(model: str | Path | Any, input_path: str | Path, output_path: str | Path, *,
               rejects_path: Optional[str | Path] = None, chunk_size: int = 100_000,
               progress: bool = True, explain: Optional[int] = None, explain_flagged: bool = False,
               explain_method: Optional[str] = None) -> BatchResult:
    """Score ``input_path`` into ``output_path``; rejected rows go to ``rejects_path``
    (default: ``<output>.rejects.csv``, written only when there are any).

    pyarrow reads the file block by block; pieces of at most ``chunk_size`` rows are scored in worker
    threads, one per core, and written in file order. A new output file is written under a temporary
    name and renamed at the end, so a failed run leaves no half-written file under the final name;
    ``-`` (stdout) and special files such as ``/dev/stdout`` are written directly. Compressed inputs
    (gzip, bzip2, xz, zstd) are read as they are. ``explain``: K explanation columns per row
    (:class:`Explanations`), for every row or, with ``explain_flagged``, for the flagged ones."""
    if explain is not None and explain < 1:
        raise UserError(f"--explain {explain}: must be 1 or more (the number of columns to name per row)")
    if explain is None and (explain_flagged or explain_method):
        raise UserError("--explain-flagged and --explain-method need --explain K")
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
    workers = scoring_threads()
    scorer = Scorer(predictor, Explanations(predictor, explain, flagged_only=explain_flagged, method=explain_method)
                     if explain is not None else None)
    source = _Source(input_path, predictor, block_bytes(input_path.stat().st_size, workers))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=input_path.stat().st_size, unit="B", unit_scale=True, desc="scoring", disable=None)
    tally = Tally()
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per scoring thread
    writing = output_path  # which file an error without a file name is about (a stream, a special file)
    try:
        with ExitStack() as files:  # a new file goes in place only when the whole run succeeded (atomic_target)
            out = files.enter_context(_opened(output_path if out_direct else
                                              files.enter_context(atomic_target(output_path)), out_kind))
            pool = files.enter_context(ThreadPoolExecutor(workers))
            rej = None
            header = source.header if source.header is not None else _header_line(source.names)
            out.write(header + ("," + ",".join(scorer.extra) + "\n").encode())
            in_flight: deque = deque()

            def finish_oldest() -> None:
                """Write the oldest piece in flight: its scored lines, and its rejected rows."""
                nonlocal rej, writing
                done = in_flight.popleft().result()
                if done.out is not None:
                    out.write(done.out)
                if done.rejects is not None:
                    writing = rejects_path
                    if rej is None:
                        rej = files.enter_context(_opened(rejects_path if rej_direct else
                                                          files.enter_context(atomic_target(rejects_path)), rej_kind))
                        rej.write(header + b",row,reason\n")
                    rej.write(done.rejects)
                    writing = output_path
                tally.add(done)

            # pieces are read here and scored in the pool; they are written in file order, and at
            # most one piece per thread waits beside the ones being scored
            for item in source.items(chunk_size):
                in_flight.append(pool.submit(scorer.score_block, item, source, chunk_size)
                                 if isinstance(item, PlainBlock) else pool.submit(scorer.score, item))
                if len(in_flight) > workers:
                    finish_oldest()
                if bar is not None:
                    bar.update(source.position() - bar.n)
            while in_flight:
                finish_oldest()
        if bar is not None:
            bar.update(bar.total - bar.n)
        if rej is None and not rej_direct and rejects_path.is_file():
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
    return BatchResult(output_path, rejects_path if rej is not None else None, tally.n_rows,
                       tally.n_rows - tally.n_rejected, tally.n_rejected, tally.n_flagged, time.perf_counter() - start,
                       direct=out_kind in ("stdout", "stderr"), imputed_non_numbers=tally.imputed)
