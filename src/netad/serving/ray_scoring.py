"""``predict.py --engine ray``: the files of ``--input`` scored on a Ray cluster into a folder of shards.

Ray Data reads the files (Parquet with their types; CSV with every column as text, as predict.py reads them),
``map_batches`` scores each batch with the same :class:`~netad.serving.columnar.TableScorer` as predict.py's
Parquet route, and Ray Data writes the shards: Parquet for Parquet input, CSV for CSV. Every input
row is in the output: scored rows with ``score`` and ``is_anomaly``, rows that cannot be scored with those empty
and the reason in ``reject_reason`` (empty for scored rows). The shards' names and the order of rows are Ray
Data's; no row numbers are kept.

The batches are scored by tasks, not by an actor pool: Ray Data then fuses reading, scoring and writing into
one task per block, so a block never travels between processes. Each worker process loads the model once
(:func:`batch_scorer` keeps it) for the blocks it is given. An actor pool (:class:`BatchScorer` is one's
callable) moves every block from a read task to an actor and on to a write task: ``benchmarks/ray_scoring.py``
measures both against predict.py side by side.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from netad.data.sources import data_files, file_columns, is_parquet, schema_mismatch
from netad.errors import UserError
from netad.ray_cluster import connect, task_error_line
from netad.serving.batch import BatchResult

REASON = "reject_reason"


class BatchScorer:
    """The model loaded once, then each Arrow batch scored into rows with ``reject_reason``."""

    def __init__(self, model: str, explain: Optional[int] = None, explain_flagged: bool = False,
                 explain_method: Optional[str] = None) -> None:
        import pyarrow as pa
        import torch

        from netad.inference import load_predictor
        from netad.serving.batch import Explanations
        from netad.serving.columnar import TableScorer

        torch.set_num_threads(1)  # one core per task
        predictor = load_predictor(model)
        explanations = Explanations(predictor, explain, flagged_only=explain_flagged, method=explain_method) \
            if explain is not None else None
        self.scorer, self.pa = TableScorer(predictor, explanations), pa

    def __call__(self, batch: Any) -> Any:
        pa = self.pa
        done = self.scorer.score(batch)
        if done.out is not None and done.rejects is None:  # the common case: every row scored
            return done.out.append_column(REASON, pa.nulls(done.out.num_rows, pa.string()))
        scored = self.scorer.empty(batch.schema) if done.out is None else done.out
        parts = [scored.append_column(REASON, pa.nulls(scored.num_rows, pa.string()))]
        if done.rejects is not None:  # the input columns, the scored columns empty, the reason
            rejects = done.rejects
            table = rejects.drop_columns(["row", "reason"])
            for name in self.scorer.extra:
                field = scored.schema.field(name)
                table = table.append_column(field, pa.nulls(rejects.num_rows, field.type))
            parts.append(table.append_column(REASON, rejects.column("reason")))
        return pa.concat_tables(parts)


@functools.lru_cache(maxsize=4)
def batch_scorer(model: str, version: tuple, explain: Optional[int], explain_flagged: bool,
                 explain_method: Optional[str]) -> BatchScorer:
    """This worker process's scorer for ``model`` (``version``: its file's size and time, so a model saved
    again under the same name is loaded again): loaded by its first batch, kept for the next ones."""
    return BatchScorer(model, explain, explain_flagged, explain_method)


def _version(model: str) -> tuple:
    try:
        st = os.stat(model)
    except OSError:  # a Hub repo id
        return ()
    return st.st_size, st.st_mtime_ns


def score_batch(batch: Any, *, model: str, explain: Optional[int] = None, explain_flagged: bool = False,
                explain_method: Optional[str] = None) -> Any:
    """What ``map_batches`` runs on each batch."""
    return batch_scorer(model, _version(model), explain, explain_flagged, explain_method)(batch)


def _model_reference(model: str | Path) -> str:
    """A local model as an absolute path (tasks may run elsewhere); a Hub repo id as it is."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else str(model)


def _input_kind(files: list[Path]) -> bool:
    """True for Parquet files, False for CSV; one kind per run."""
    kinds = {f.stat().st_size > 0 and is_parquet(f) for f in files}
    if len(kinds) > 1:
        first_parquet = next(f for f in files if is_parquet(f))
        first_csv = next(f for f in files if not is_parquet(f))
        raise UserError(f"--engine ray reads one kind of file per run: {first_parquet} is Parquet, {first_csv} "
                        f"CSV; score them in two runs")
    return kinds.pop()


def _check_columns(files: list[Path], needed: list[str], column_names: Optional[list[str]]) -> list[str]:
    """The files' columns (they must share them, and hold those the model reads)."""
    first = file_columns(files[0], column_names)
    missing = [c for c in needed if c not in first]
    if missing:
        raise UserError(f"{files[0]}: lacks columns the model reads: {', '.join(missing)}")
    for f in files[1:]:
        problem = schema_mismatch(f, file_columns(f, column_names), files[0], first)
        if problem:
            raise UserError(problem)
    return first


def _check_output(output: Path) -> None:
    if str(output) == "-":
        raise UserError("--engine ray writes a folder of shards: name a folder as --output, not -")
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: --engine ray writes a folder of shards; {output} is a file")
    if output.is_dir() and any(output.iterdir()):
        raise UserError(f"--output {output} already holds files: name a new or empty folder (the shards of "
                        f"another run would be mixed with this one's)")


def _tally(output: Path, parquet: bool) -> tuple[int, int, int]:
    """Rows, flagged rows and rejected rows of the written shards."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.dataset as pads

    if parquet:
        fmt: Any = "parquet"
    else:
        fmt = pads.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types={"is_anomaly": pa.string()},
                                                                      strings_can_be_null=False))
    shards = [str(p) for p in sorted(output.iterdir()) if p.is_file() and not p.name.startswith((".", "_"))]
    if not shards:
        raise UserError(f"no shards in {output}: the input held no rows, or the Ray workers wrote where this "
                        f"machine does not see (--engine ray needs a file system shared at the same paths)")
    table = pads.dataset(shards, format=fmt).to_table(columns=["is_anomaly"])
    flags = table.column("is_anomaly")
    if not parquet:
        flags = pc.if_else(pc.equal(flags, ""), pa.scalar(None, pa.string()), flags).cast(pa.int8())
    n_rows = table.num_rows
    rejected = flags.null_count
    flagged = int(pc.sum(flags).as_py() or 0)
    return n_rows, flagged, rejected


def score_with_ray(model: str | Path, input_spec: str | Path, output_path: str | Path, *,
                   chunk_size: Optional[int] = None, progress: bool = True, explain: Optional[int] = None,
                   explain_flagged: bool = False, explain_method: Optional[str] = None) -> BatchResult:
    """Score every file of ``input_spec`` on the Ray cluster into the folder ``output_path``; ``chunk_size``:
    rows per batch (default: a Ray Data block's)."""
    from netad.inference import load_predictor
    from netad.serving.columnar import check_options

    files = [f.resolve() for f in data_files(input_spec, "input")]
    check_options(1 if chunk_size is None else chunk_size, explain, explain_flagged, explain_method)
    output = Path(output_path)
    _check_output(output)
    parquet = _input_kind(files)
    predictor = load_predictor(model)  # here first: a bad model or missing columns are said before the cluster works
    names = (predictor.config.get("data") or {}).get("column_names")  # CSV files without a header
    columns = _check_columns(files, list(predictor.columns), names)
    ray = connect()
    import pyarrow as pa
    import pyarrow.csv as pacsv

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    start = time.perf_counter()
    paths = [str(f) for f in files]
    if parquet:
        ds = ray.data.read_parquet(paths)
    else:  # every column as text, as predict.py reads a CSV: the columns it does not read come back as they were
        headerless = {"read_options": pacsv.ReadOptions(column_names=names, use_threads=False)} if names else {}
        ds = ray.data.read_csv(paths, parse_options=pacsv.ParseOptions(newlines_in_values=True), **headerless,
                               convert_options=pacsv.ConvertOptions(
                                   column_types={c: pa.string() for c in columns},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False))
    scored = ds.map_batches(score_batch, batch_format="pyarrow", batch_size=chunk_size,
                            fn_kwargs=dict(model=_model_reference(model), explain=explain,
                                           explain_flagged=explain_flagged, explain_method=explain_method))
    output.mkdir(parents=True, exist_ok=True)
    target = str(output.resolve())
    try:
        if parquet:
            scored.write_parquet(target)
        else:
            scored.write_csv(target)
    except (ray.exceptions.RayError, ray.exceptions.UserCodeException, pa.ArrowException) as exc:
        raise UserError(f"scoring on Ray failed: {task_error_line(exc)}") from None  # a task's error: its line
    seconds = time.perf_counter() - start
    n_rows, n_flagged, n_rejected = _tally(output, parquet)
    return BatchResult(output, output if n_rejected else None, n_rows, n_rows - n_rejected, n_rejected, n_flagged,
                       seconds, files=len(files))

