"""Scoring tables whose columns are typed (Parquet files, Ray Data batches), and predict.py's inputs: one file, a
folder or a glob of CSV and Parquet files (see :mod:`netad.data.sources`).

A Parquet file is read one record batch at a time (pyarrow.parquet), so memory stays flat however large it is.
Each batch goes through the same :class:`~netad.serving.batch.Scorer` as a CSV piece: the model's columns
encoded by pyarrow and the preprocessor's shared encoder, or, when a value does not fit, pandas and the
preprocessor's row checks, which name the rows that cannot be scored. The output keeps every input column with
its type and adds ``score`` (float32, the predictor's own value), ``is_anomaly`` (int8) and, for a hybrid,
``novelty_score``; written as Parquet (``.parquet``/``.pq`` output), or as CSV like the CSV route writes it.
"""

from __future__ import annotations

import csv
import io
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from netad.data.sources import data_files, is_parquet, with_text_columns
from netad.errors import UserError, os_error_line
from netad.inference import load_predictor
from netad.io import atomic_target
from netad.serving.batch import (BatchResult, Done, Explanations, Scorer, Tally, csv_lines, novelty_text,
                                 score_file, score_text, scoring_threads)

PARQUET_SUFFIXES = (".parquet", ".pq")
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


class TableScorer:
    """Scores Arrow tables with typed columns. Flag and category columns are read as text (a Parquet boolean as
    ``true``/``false``, an integer category as its digits), as the model learned them from CSV text."""

    def __init__(self, predictor: Any, explanations: Optional[Explanations] = None) -> None:
        self.predictor, self.scorer = predictor, Scorer(predictor, explanations)
        self.explanations = explanations
        st = predictor.preprocessor.state
        self.text = set(st["categorical"]["columns"]) | set(st["boolean"]["columns"])
        self.extra = self.scorer.extra
        self.numbers = {n for n in self.extra if n in ("score", "novelty_score") or n.endswith("_contribution")}

    def missing(self, names: list[str]) -> list[str]:
        return [c for c in self.predictor.columns if c not in names]

    def view(self, table: pa.Table) -> pa.Table:
        """The model's columns, those it reads as text cast to text."""
        return with_text_columns(table, self.predictor.columns, self.text)

    def score(self, table: pa.Table, first_row: int = 1) -> Done:
        """``table``'s rows scored; ``first_row``: the 1-based row number of its first row in its file."""
        view = self.view(table)
        enc = self.scorer.encode(view)
        if enc is not None and np.isfinite(enc.dense).all():
            scores, novelty = self.predictor.score_encoded(enc)
            if np.isfinite(scores).all():
                flagged = scores >= self.predictor.threshold
                why = self.explanations.fields(enc, flagged) if self.explanations is not None else []
                return Done(self.joined(table, scores, flagged, novelty, why), None, table.num_rows,
                            int(flagged.sum()), 0, {})
        return self.checked(table, view, first_row)

    def joined(self, table: pa.Table, scores: np.ndarray, flagged: np.ndarray, novelty: Optional[np.ndarray],
               why: list[pa.Array]) -> pa.Table:
        columns = [pa.array(np.asarray(scores, dtype=np.float32)), pa.array(flagged.astype(np.int8))]
        columns += [pa.array(np.asarray(novelty, dtype=np.float32))] if novelty is not None else []
        for name, column in zip(self.extra, columns + why):
            if name.endswith("_contribution"):  # text from Explanations (empty for rows not explained)
                column = pc.cast(pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column), pa.float64())
            table = table.append_column(name, column)
        return table

    def empty(self, schema: pa.Schema) -> pa.Table:
        """No rows, the columns a scored table of ``schema`` has."""
        names = self.explanations.names if self.explanations is not None else []
        return self.joined(pa.Table.from_batches([], schema=schema), np.zeros(0), np.zeros(0, dtype=bool),
                           np.zeros(0) if self.predictor.novelty is not None else None,
                           [pa.array([], pa.string()) for _ in names])

    def checked(self, table: pa.Table, view: pa.Table, first_row: int) -> Done:
        """The rows through pandas: each scored, or rejected with the reason."""
        rows = self.scorer.checked_rows(view)
        out = self.joined(table.take(rows.good), rows.scores, rows.flagged, rows.novelty, rows.why) \
            if len(rows.good) else None
        rejects = None
        if len(rows.bad):
            rejects = table.take(rows.bad).append_column("row", pa.array(first_row + rows.bad, pa.int64())) \
                .append_column("reason", pa.array(rows.reasons[rows.bad].tolist(), pa.string()))
        return Done(out, rejects, table.num_rows, int(rows.flagged.sum()), len(rows.bad), rows.imputed)


class _TableWriter:
    """Tables appended to one Parquet or CSV file (opened at the first table; CSV: scores as the CSV route
    writes them, the header first)."""

    def __init__(self, path: Path, files: ExitStack) -> None:
        self.path, self.files = path, files
        self.parquet = path.suffix.lower() in PARQUET_SUFFIXES
        self.writer: Any = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            tmp = self.files.enter_context(atomic_target(self.path))
            if self.parquet:
                self.writer = self.files.enter_context(pq.ParquetWriter(tmp, table.schema))
            else:
                self.writer = self.files.enter_context(open(tmp, "wb"))
                header = io.StringIO()
                csv.writer(header, lineterminator="\n").writerow(table.column_names)
                self.writer.write(header.getvalue().encode("utf-8", "surrogateescape"))
        if self.parquet:
            self.writer.write_table(table)
            return
        for name, text in (("score", score_text), ("novelty_score", novelty_text)):
            if name in table.column_names:
                i = table.column_names.index(name)
                table = table.set_column(i, name, text(table.column(i).to_numpy()))
        self.writer.write(csv_lines(table))


def score_parquet(predictor: Any, input_path: Path, output_path: Path, *, rejects_path: Optional[Path] = None,
                  chunk_size: int = 100_000, progress: bool = True,
                  explanations: Optional[Explanations] = None) -> BatchResult:
    """Score a Parquet file into ``output_path`` (Parquet for a ``.parquet``/``.pq`` name, else CSV); rejected
    rows go to ``rejects_path`` (default ``<output>.rejects.<same kind>``, written only when there are any).
    Record batches of at most ``chunk_size`` rows are scored in threads, one per core, and written in order;
    the files appear under their names only when the run succeeded."""
    try:
        source = pq.ParquetFile(input_path, pre_buffer=False)  # pre-buffered reads keep every batch read
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{input_path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    scorer = TableScorer(predictor, explanations)
    missing = scorer.missing(source.schema_arrow.names)
    if missing:
        names = source.schema_arrow.names
        raise UserError(f"{input_path}: lacks columns the model reads: {', '.join(missing)} (it has: "
                        f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''})")
    total = source.metadata.num_rows
    if total == 0:
        raise UserError(f"input file holds no rows: {input_path}")
    if rejects_path is None:
        rejects_path = output_path.with_suffix(".rejects" + (output_path.suffix if output_path.suffix.lower()
                                                             in PARQUET_SUFFIXES else ".csv"))
    start = time.perf_counter()
    workers = scoring_threads()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="rows", unit_scale=True, desc="scoring", disable=None)
    tally = Tally()
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per scoring thread
    writing = output_path
    try:
        with ExitStack() as files:
            out, rej = _TableWriter(output_path, files), _TableWriter(rejects_path, files)
            pool = files.enter_context(ThreadPoolExecutor(workers))
            in_flight: deque = deque()

            def finish_oldest() -> None:
                nonlocal writing
                done = in_flight.popleft().result()
                if done.out is not None:
                    out.write(done.out)
                if done.rejects is not None:
                    writing = rejects_path
                    rej.write(done.rejects)
                    writing = output_path
                tally.add(done)
                if bar is not None:
                    bar.update(done.n_rows)

            first_row = 1
            for batch in source.iter_batches(batch_size=chunk_size):
                table = pa.Table.from_batches([batch])
                in_flight.append(pool.submit(scorer.score, table, first_row))
                first_row += table.num_rows
                if len(in_flight) > workers:
                    finish_oldest()
            while in_flight:
                finish_oldest()
            if out.writer is None:  # every row rejected: the output holds the header (CSV) or schema only
                out.write(scorer.empty(source.schema_arrow))
        if rej.writer is None and rejects_path.is_file():
            rejects_path.unlink()  # an earlier run's rejects would read as this run's
    except OSError as exc:
        if os_error_line(exc) is None:
            raise
        raise UserError(os_error_line(exc, exc.filename or writing)) from None
    finally:
        torch.set_num_threads(torch_threads)
        if bar is not None:
            bar.close()
    return BatchResult(output_path, rejects_path if rej.writer is not None else None, tally.n_rows,
                       tally.n_rows - tally.n_rejected, tally.n_rejected, tally.n_flagged, time.perf_counter() - start,
                       imputed_non_numbers=tally.imputed)


def output_name(path: Path) -> str:
    """The name an input file's scores get in an output folder: its own, less a compression suffix."""
    name = path.name
    for suffix in _COMPRESSED_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def check_options(chunk_size: int, explain: Optional[int], explain_flagged: bool,
                  explain_method: Optional[str]) -> None:
    """predict.py's --chunk-size and --explain options, checked before a model loads."""
    if chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    if explain is not None and explain < 1:
        raise UserError(f"--explain {explain}: must be 1 or more (the number of columns to name per row)")
    if explain is None and (explain_flagged or explain_method):
        raise UserError("--explain-flagged and --explain-method need --explain K")


def score_inputs(model: str | Path | Any, input_spec: str | Path, output_path: str | Path, *,
                 rejects_path: Optional[str | Path] = None, chunk_size: int = 100_000, progress: bool = True,
                 explain: Optional[int] = None, explain_flagged: bool = False,
                 explain_method: Optional[str] = None) -> BatchResult:
    """predict.py: score one CSV or Parquet file into ``output_path``, or every file of a folder or glob into the
    folder ``output_path``, each under its own name (see :func:`output_name`), its rejects beside it."""
    files = data_files(input_spec, "input")
    check_options(chunk_size, explain, explain_flagged, explain_method)
    predictor = load_predictor(model) if isinstance(model, (str, Path)) else model
    explanations = Explanations(predictor, explain, flagged_only=explain_flagged, method=explain_method) \
        if explain is not None else None
    kw = dict(chunk_size=chunk_size, progress=progress)
    if len(files) == 1 and Path(input_spec).is_file():
        return _score_one(predictor, files[0], Path(output_path), rejects_path, explanations, explain,
                          explain_flagged, explain_method, **kw)
    out_dir = Path(output_path)
    if rejects_path is not None:
        raise UserError("--rejects names one file: with several input files each file's rejects go beside its "
                        "output in the --output folder")
    if str(output_path) == "-" or (out_dir.exists() and not out_dir.is_dir()):
        raise UserError(f"--output {output_path}: several input files are scored into a folder; name a folder")
    targets: dict[str, Path] = {}
    for f in files:
        name = output_name(f)
        if name in targets:
            raise UserError(f"{targets[name]} and {f} would both be written to {out_dir / name}: give each input "
                            f"file its own name")
        targets[name] = f
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [_score_one(predictor, f, out_dir / name, None, explanations, explain, explain_flagged,
                          explain_method, **kw) for name, f in targets.items()]
    imputed: dict[str, int] = {}
    for r in results:
        for col, count in r.imputed_non_numbers.items():
            imputed[col] = imputed.get(col, 0) + count
    return BatchResult(out_dir, out_dir if any(r.rejects for r in results) else None,
                       sum(r.n_rows for r in results), sum(r.n_scored for r in results),
                       sum(r.n_rejected for r in results), sum(r.n_flagged for r in results),
                       sum(r.seconds for r in results), imputed_non_numbers=imputed, files=len(results))


def _score_one(predictor: Any, path: Path, output: Path, rejects: Optional[str | Path],
               explanations: Optional[Explanations], explain: Optional[int], explain_flagged: bool,
               explain_method: Optional[str], **kw: Any) -> BatchResult:
    if path.stat().st_size and is_parquet(path):
        if str(output) == "-":
            raise UserError("--output -: a Parquet input is scored to a file (.parquet, or .csv)")
        return score_parquet(predictor, path, output, rejects_path=Path(rejects) if rejects else None,
                             explanations=explanations, **kw)
    if output.suffix.lower() in PARQUET_SUFFIXES:
        raise UserError(f"--output {output}: Parquet output needs Parquet input; {path} is scored to CSV "
                        f"(name the output .csv)")
    return score_file(predictor, path, output, rejects_path=rejects, explain=explain, explain_flagged=explain_flagged,
                      explain_method=explain_method, **kw)
