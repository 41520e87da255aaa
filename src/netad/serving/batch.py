"""Batch scoring (predict.py): a CSV of records in, the same rows plus ``score`` and ``is_anomaly`` out.

The file is read in chunks, so memory stays flat however large it is. Rows that cannot be
scored (a non-number in a numeric column, a missing value the model does not impute, ...) go
to a rejects file with their row number and the reason; every other row is scored. No label
column is needed; any extra column is passed through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from netad.errors import UserError


@dataclass
class BatchResult:
    output: Path
    rejects: Optional[Path]
    n_rows: int
    n_scored: int
    n_rejected: int
    n_flagged: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else float("nan")


def load_predictor(model: str | Path) -> Any:
    """A checkpoint file (``.ckpt``), an exported folder, or a Hub repo id."""
    from netad.hub.predictor import NetadPredictor

    path = Path(model)
    if path.is_file():
        from netad.hub.export import artifact_from_checkpoint
        from netad.models.classifier import read_checkpoint

        config, weights = artifact_from_checkpoint(read_checkpoint(path))
        return NetadPredictor(config=config, weights=weights)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not an exported netad model (no config.json)")
        return NetadPredictor.from_pretrained(path)
    if path.suffix == ".ckpt" or "/" not in str(model) or str(model).count("/") != 1:
        raise UserError(f"model not found: {model} (a checkpoint, an exported folder or a Hub repo id user/name)")
    try:
        return NetadPredictor.from_pretrained(str(model))
    except Exception as exc:  # noqa: BLE001 - the Hub client raises many kinds; one line for the user
        raise UserError(f"cannot load model '{model}' from the Hub ({type(exc).__name__})") from None


def _chunks(path: Path, predictor: Any, chunk_size: int) -> Iterator[pd.DataFrame]:
    names = predictor.config.get("data", {}).get("column_names")
    try:
        reader = pd.read_csv(path, chunksize=chunk_size, low_memory=False,
                             **({"header": None, "names": names} if names else {}))
        yield from reader
    except pd.errors.EmptyDataError:
        raise UserError(f"input file is empty: {path}") from None
    except pd.errors.ParserError as exc:
        raise UserError(f"{path}: cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None


def score_file(model: str | Path | Any, input_path: str | Path, output_path: str | Path, *,
               rejects_path: Optional[str | Path] = None, chunk_size: int = 100_000,
               progress: bool = True) -> BatchResult:
    """Score ``input_path`` into ``output_path``; rejected rows go to ``rejects_path``
    (default: ``<output>.rejects.csv``, written only when there are any)."""
    predictor = load_predictor(model) if isinstance(model, (str, Path)) else model
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise UserError(f"input file not found: {input_path}")
    if input_path.stat().st_size == 0:
        raise UserError(f"input file is empty: {input_path}")
    if chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    rejects_path = Path(rejects_path) if rejects_path else output_path.with_suffix(".rejects.csv")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = output_path.with_name(f".{output_path.name}.partial")
    tmp_rej = rejects_path.with_name(f".{rejects_path.name}.partial")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="rows", unit_scale=True, desc="scoring", disable=None)
    start = time.perf_counter()
    n_rows = n_rejected = n_flagged = 0
    wrote_out = wrote_rej = False
    try:
        with tmp_out.open("w", newline="") as out, tmp_rej.open("w", newline="") as rej:
            for chunk in _chunks(input_path, predictor, chunk_size):
                missing = [c for c in predictor.columns if c not in chunk.columns]
                if missing:
                    raise UserError(f"{input_path}: missing columns the model reads: {', '.join(missing)}")
                row_numbers = np.arange(n_rows, n_rows + len(chunk)) + 1  # 1-based data rows
                reasons = predictor.preprocessor.row_problems(chunk[predictor.columns])
                bad = reasons != ""
                good = chunk[~bad]
                if len(good):
                    scores, novelty = predictor.score_with_novelty(good)
                    flagged = (scores >= predictor.threshold).astype(np.int64)
                    scored = good.assign(score=scores, is_anomaly=flagged)
                    if novelty is not None:  # a hybrid: the novelty detector's own score too
                        scored = scored.assign(novelty_score=novelty)
                    scored.to_csv(out, index=False, header=not wrote_out)
                    wrote_out = True
                    n_flagged += int(flagged.sum())
                if bad.any():
                    rejected = chunk[bad].assign(row=row_numbers[bad], reason=reasons[bad])
                    rejected.to_csv(rej, index=False, header=not wrote_rej)
                    wrote_rej = True
                    n_rejected += int(bad.sum())
                n_rows += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if not wrote_out:  # every row rejected: still a valid (header-only) output file
                pd.DataFrame(columns=[*predictor.columns, "score", "is_anomaly"]).to_csv(out, index=False)
        tmp_out.replace(output_path)
        if wrote_rej:
            tmp_rej.replace(rejects_path)
        else:
            tmp_rej.unlink(missing_ok=True)
    except BaseException:
        tmp_out.unlink(missing_ok=True)
        tmp_rej.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return BatchResult(output_path, rejects_path if wrote_rej else None, n_rows, n_rows - n_rejected, n_rejected,
                       n_flagged, time.perf_counter() - start)
