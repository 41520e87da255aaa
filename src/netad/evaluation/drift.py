"""``netad drift``: is new traffic still like the traffic the model was trained on?

Against the training-data summary the model carries (:mod:`netad.data.summary`; no training rows needed), per
column: the population stability index (PSI) over the training deciles (numbers) or values (flags, categories),
and a two-sample test: Kolmogorov-Smirnov against the training CDF at its 1st-99th percentiles (numbers; the
asymptotic p-value with the effective sample size of both sets), chi-square on the two sets' value counts
(flags, categories). The same for the model's score (against the validation rows' scores: the training
traffic's mix of normal rows and attacks, so a new mix shows too) and its flagged rate (a binomial test against
the validation rows' rate).

A column has drifted when its PSI is at least :data:`PSI_DRIFT` **and** its test's p-value is below
:data:`P_DRIFT`: large files make every tiny shift significant, small ones make PSI noisy; both must agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from netad.data.preprocessing import parse_boolean
from netad.data.sources import data_files, file_columns, is_parquet, read_csv_with, with_text_columns
from netad.data.summary import GAP, OTHER, counts_of, psi
from netad.errors import UserError

PSI_DRIFT = 0.2  # the usual reading: below 0.1 stable, 0.1-0.2 some shift, above 0.2 a real change
P_DRIFT = 0.01


@dataclass
class DriftResult:
    rows: list[dict[str, Any]]  # one per column, then score; most drift first
    flagged: dict[str, Any]
    n_rows: int
    drifted: list[str]
    verdict: str
    files: dict[str, Path] = field(default_factory=dict)


def numeric_drift(summary: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    """PSI over the training deciles (gaps as one more bin) and the KS test against the training CDF."""
    from scipy.special import kolmogorov  # the asymptotic KS distribution's survival function

    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    edges = np.asarray(summary["edges"], dtype=np.float64)
    new = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    out = {"psi": psi(list(summary["bins"]) + [summary["missing"]], list(new) + [len(x) - len(finite)]),
           "statistic": math.nan, "p_value": math.nan, "test": "ks"}
    points, cdf = np.asarray(summary["ks_points"]), np.asarray(summary["ks_cdf"])
    m = summary["rows"] - summary["missing"]
    if len(finite) and len(points) and m:
        # the share of the new values at or below each point: values binned between the points, then summed up
        below = np.cumsum(np.bincount(np.searchsorted(points, finite, side="left"), minlength=len(points) + 1))
        d = float(np.max(np.abs(below[:len(points)] / len(finite) - cdf)))
        n_eff = len(finite) * m / (len(finite) + m)
        out.update(statistic=d, p_value=float(kolmogorov(d * math.sqrt(n_eff))))
    return out


def counts_drift(train: dict[str, int], new: dict[str, int]) -> dict[str, Any]:
    """PSI over the values and the chi-square test of the two sets' counts."""
    from scipy.special import chdtrc  # the chi-square distribution's survival function

    keys = sorted(set(train) | set(new))
    t = np.array([train.get(k, 0) for k in keys], dtype=np.float64)
    n = np.array([new.get(k, 0) for k in keys], dtype=np.float64)
    out = {"psi": psi(t, n), "statistic": math.nan, "p_value": math.nan, "test": "chi-square"}
    used = (t + n) > 0
    if used.sum() >= 2 and t.sum() and n.sum():  # Pearson's test of the 2 x k table of counts
        table = np.vstack([t[used], n[used]])
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        stat = float(((table - expected) ** 2 / expected).sum())
        out.update(statistic=stat, p_value=float(chdtrc(used.sum() - 1, stat)))
    return out


def read_input(predictor: Any, path: str | Path) -> Any:
    """The model's columns of every file ``path`` names (a CSV, compressed too, or Parquet file; a folder or a
    glob of them) as one pyarrow table, text columns as text."""
    import pyarrow as pa

    state = predictor.preprocessor.state
    text = state["categorical"]["columns"] + state["boolean"]["columns"]
    tables = [_read_file(predictor, f, text) for f in data_files(path, "input")]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    if table.num_rows == 0:
        raise UserError(f"input {'file' if len(tables) == 1 else 'files'} hold{'s' if len(tables) == 1 else ''} "
                        f"no rows: {path}")
    return table


def _read_file(predictor: Any, path: Path, text: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise UserError(f"input file is empty: {path}")

    def lacks(head: list[str]) -> None:
        missing = [c for c in predictor.columns if c not in head]
        if missing:
            raise UserError(f"{path}: lacks columns the model reads: {', '.join(missing)} (it has: "
                            f"{', '.join(head[:12])}{', ...' if len(head) > 12 else ''})")

    if is_parquet(path):
        try:
            source = pq.ParquetFile(path)
            lacks(source.schema_arrow.names)
            return with_text_columns(source.read(columns=predictor.columns), predictor.columns, text)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    names = (predictor.config.get("data") or {}).get("column_names")
    read = pacsv.ReadOptions(column_names=names, block_size=8 << 20) if names else pacsv.ReadOptions(block_size=8 << 20)

    lacks(file_columns(path, names))
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in text}, include_columns=predictor.columns,
                                   strings_can_be_null=True)
    return read_csv_with(path, lambda r: pacsv.read_csv(r, read_options=read, convert_options=convert))


def _numbers(column: Any) -> np.ndarray:
    """A numeric column as float64, gaps and values that are not numbers as NaN."""
    import pyarrow as pa

    try:
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(pd.Series(column.to_pylist(), dtype=object), errors="coerce").to_numpy(np.float64)


def _texts(column: Any) -> tuple[list[Optional[str]], np.ndarray]:
    """A text column as its distinct values (None for a gap) and each row's index into them."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)


def drift_check(predictor: Any, path: str | Path) -> DriftResult:
    """Every column the model reads, its score and flagged rate, against the model's training-data summary."""
    summary = predictor.config.get("data_summary")
    if summary is None:
        raise UserError("this model carries no training-data summary (trained before netad checked drift): "
                        "train it again (train.py) and export it again to check drift")
    table = read_input(predictor, path)
    pre = predictor.preprocessor
    state = pre.state
    rows, numeric, booleans, codes = [], {}, {}, {}
    for col in state["numeric"]["columns"]:
        numeric[col] = _numbers(table.column(col))
        rows.append({"column": col, "kind": "numeric", **numeric_drift(summary["columns"][col], numeric[col])})
    for col in state["boolean"]["columns"]:
        values, index = _texts(table.column(col))
        flags = [None if v is None else parse_boolean(v) for v in values]
        seen = [None if f is None else str(f) for f in flags]
        booleans[col] = np.array([np.nan if f is None else float(f) for f in flags])[index]
        rows.append({"column": col, "kind": "boolean",
                     **counts_drift(summary["columns"][col]["counts"], counts_of(seen, index))})
    for i, col in enumerate(state["categorical"]["columns"]):
        values, index = _texts(table.column(col))
        known = [k for k in summary["columns"][col]["counts"] if k not in (OTHER, GAP)]
        rows.append({"column": col, "kind": "categorical",
                     **counts_drift(summary["columns"][col]["counts"], counts_of(values, index, known))})
        lookup = pre.category_codes(i, ["" if v is None else v for v in values])
        lookup[[j for j, v in enumerate(values) if v is None]] = pre.gap_code(i)
        codes[col] = lookup[index]
    # the scores of the rows the model can score (a gap it does not impute leaves a row out)
    enc = pre.encode_arrays([numeric[c] for c in state["numeric"]["columns"]],
                            [np.nan_to_num(booleans[c]) for c in state["boolean"]["columns"]],
                            [codes[c] for c in state["categorical"]["columns"]])
    scored = np.isfinite(enc.dense).all(axis=1)
    for c in state["boolean"]["columns"]:
        scored &= np.isfinite(booleans[c])
    scores = predictor.score_encoded(enc if scored.all() else enc.take(scored))[0]
    score_row = {"column": "(score)", "kind": "score", **numeric_drift(summary["score"], scores)}
    for row in rows + [score_row]:
        row["drifted"] = bool(row["psi"] >= PSI_DRIFT and row["p_value"] < P_DRIFT)
    rows.sort(key=lambda r: -r["psi"])
    rows.append(score_row)
    flagged = _flagged(summary["flagged"], scores >= predictor.threshold)
    flagged["unscored_rows"] = int((~scored).sum())
    drifted = [r["column"] for r in rows if r["drifted"] and r["kind"] != "score"]
    return DriftResult(rows, flagged, table.num_rows, drifted, _verdict(rows, drifted, flagged, state))


def _flagged(reference: dict[str, int], flagged: np.ndarray) -> dict[str, Any]:
    from scipy.special import bdtr, bdtrc  # the binomial distribution's CDF and survival function

    rate = reference["flagged"] / reference["rows"] if reference["rows"] else math.nan
    k, n = int(flagged.sum()), int(len(flagged))
    # two-sided: twice the smaller tail (capped at 1)
    p = float(min(1.0, 2 * min(bdtr(k, n, rate), bdtrc(k - 1, n, rate) if k else 1.0))) if 0 < rate < 1 else math.nan
    return {"rate": k / n, "flagged": k, "rows": n, "validation_rate": rate, "p_value": p}


def _verdict(rows: list[dict[str, Any]], drifted: list[str], flagged: dict[str, Any], state: dict[str, Any]) -> str:
    by = {r["column"]: r for r in rows}
    if drifted:
        names = ", ".join(f"{c} (PSI {by[c]['psi']:.2f})" for c in drifted[:8]) + (", ..." if len(drifted) > 8 else "")
        text = f"{len(drifted)} of {len(rows) - 1} column{'s' if len(rows) > 2 else ''} drifted: {names}"
    else:
        text = f"no column drifted (of {len(rows) - 1}; PSI >= {PSI_DRIFT} with p < {P_DRIFT})"
    score = by["(score)"]
    text += f"; score {'drifted' if score['drifted'] else 'stable'} (PSI {score['psi']:.2f})"
    text += f"; {100 * flagged['rate']:.1f} % flagged (validation rows: {100 * flagged['validation_rate']:.1f} %)"
    return text


def write_report(result: DriftResult, out: Path) -> dict[str, Path]:
    """``drift.csv`` (the table), ``drift.json`` (table, flagged rate, verdict) and ``drift.png`` in ``out``."""
    import json

    from netad.io import atomic_target

    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "drift.csv", "json": out / "drift.json", "figure": out / "drift.png"}
    pd.DataFrame(result.rows).to_csv(files["csv"], index=False)
    files["json"].write_text(json.dumps({"rows": result.n_rows, "verdict": result.verdict, "drifted": result.drifted,
                                         "flagged": result.flagged, "columns": result.rows, "psi_drift": PSI_DRIFT,
                                         "p_drift": P_DRIFT}, indent=2, default=float) + "\n")
    figure = drift_figure(result.rows, PSI_DRIFT)
    with atomic_target(files["figure"]) as tmp:
        figure.savefig(tmp, format="png")
    return files


def drift_figure(rows: list[dict[str, Any]], cut: float, limit: int = 30) -> Any:
    """PSI per column (the ``limit`` largest) and of the score, drifted ones in red, the drift cut dashed. (Here,
    not in :mod:`netad.evaluation.plots`, which loads the metrics stack: drift needs matplotlib alone.)"""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from netad.evaluation.colors import ANOMALY_COLOR, NORMAL_COLOR, THRESHOLD_COLOR

    shown = [r for r in rows if r["kind"] != "score"][:limit] + [r for r in rows if r["kind"] == "score"]
    fig = Figure(figsize=(7.2, max(2.6, 0.28 * len(shown) + 1.2)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(shown))[::-1]
    colors = [ANOMALY_COLOR if r["drifted"] else NORMAL_COLOR for r in shown]
    bars = ax.barh(y, [r["psi"] for r in shown], color=colors)
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_yticks(y, [r["column"] for r in shown], fontsize=8)
    ax.axvline(cut, color=THRESHOLD_COLOR, linestyle="--", linewidth=1)
    ax.set_xlabel(f"population stability index against the training rows (drift: >= {cut} and p < {P_DRIFT})")
    drifted = sum(r["drifted"] for r in shown if r["kind"] != "score")
    ax.set_title(f"Drift per column: {drifted} drifted", fontsize=9)
    ax.legend(handles=[Patch(color=ANOMALY_COLOR, label="drifted"), Patch(color=NORMAL_COLOR, label="stable")],
              loc="lower right", fontsize=8)
    return fig


def format_table(rows: list[dict[str, Any]], limit: Optional[int] = 20) -> str:
    shown = rows if limit is None or len(rows) <= limit + 1 else rows[:limit] + [rows[-1]]
    width = max(len(r["column"]) for r in shown)
    lines = [f"{'column':<{width}}  {'kind':<11}  {'PSI':>7}  {'test':<10}  {'p-value':>9}  drifted"]
    for r in shown:
        p = "-" if math.isnan(r["p_value"]) else f"{r['p_value']:.2e}"
        lines.append(f"{r['column']:<{width}}  {r['kind']:<11}  {r['psi']:>7.3f}  {r['test']:<10}  {p:>9}  "
                     f"{'yes' if r['drifted'] else ''}")
    if len(shown) < len(rows):
        lines.insert(-1, f"... {len(rows) - len(shown)} more in drift.csv")
    return "\n".join(lines)
