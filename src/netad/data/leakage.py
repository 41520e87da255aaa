"""Checks before training for data that would give a perfect, worthless model.

- A column that alone separates the labels: its single-column ROC AUC on the development rows is at least
  :data:`SEPARATES` (a category column is scored by the anomaly rate of its values, learned on half the rows
  and measured on the other half, so a column of unique ids does not pass for a perfect one).
- A number column that rises (or falls) with row order and separates the labels: an id in a file sorted by
  label.
- Exact duplicate rows (features and label) shared between the development rows and the test hold-out, or
  repeated inside the development rows, where copies can fall on both sides of a fold.

``data.leakage_check`` says what a finding does: ``warn`` (the default), ``error`` (one line, nothing is
trained) or ``off``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

#: single-column ROC AUC at which a column is said to separate the labels by itself
SEPARATES = 0.99
#: an id-like column: |Spearman correlation| with row order at least this, and ROC AUC at least ORDER_AUC
ORDER_RHO, ORDER_AUC = 0.99, 0.9
#: shared or repeated exact rows are reported from this share of the rows they concern
DUPLICATE_SHARE = 0.01
#: the column checks read at most this many development rows (a seeded sample)
MAX_ROWS = 200_000


@dataclass
class Finding:
    kind: str  # separates | row_order | duplicates_test | duplicates_dev
    column: str | None
    figure: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _auroc(values: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``values`` as a score for ``labels`` (Mann-Whitney through ranks; ties count half), or the
    same for the reversed score when higher: a column separates whichever way round it runs."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(values)
    auc = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(max(auc, 1.0 - auc))


def _category_auroc(values: pd.Series, labels: np.ndarray) -> float:
    """A category column scored by the anomaly rate of each value, learned on one half of the rows and
    measured on the other (both ways round, the lower kept): a label in words scores 1, an id 0.5."""
    text = values.astype(str).to_numpy()
    half = np.arange(len(text)) % 2 == 0
    out = []
    for learn in (half, ~half):
        rates = pd.Series(labels[learn]).groupby(text[learn]).mean()
        prior = labels[learn].mean()
        scores = pd.Series(text[~learn]).map(rates).fillna(prior).to_numpy(dtype=np.float64)
        out.append(_auroc(scores, labels[~learn]))
    return float(min(out))


def column_findings(features: pd.DataFrame, labels: np.ndarray, order: np.ndarray) -> list[Finding]:
    """The column checks on ``features`` (development rows) with their labels and row numbers in the file."""
    found = []
    for column in features.columns:
        series = features[column]
        numeric = pd.api.types.is_numeric_dtype(series) or series.dtype == bool
        if numeric:
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            keep = np.isfinite(values)
            if keep.sum() < 2 or np.nanmin(values[keep]) == np.nanmax(values[keep]):
                continue
            auc = _auroc(values[keep], labels[keep])
        else:
            if series.nunique() < 2:
                continue
            auc = _category_auroc(series, labels)
        if np.isnan(auc):
            continue
        if numeric:
            rho = abs(float(spearmanr(values[keep], order[keep]).statistic))
            if rho >= ORDER_RHO and auc >= ORDER_AUC:
                found.append(Finding("row_order", str(column), auc,
                                     f"column '{column}' rises with row order (|Spearman| {rho:.3f}) and separates "
                                     f"the labels (ROC AUC {auc:.3f}): an id in a file sorted by label? drop it "
                                     f"(data.drop_columns)"))
                continue
        if auc >= SEPARATES:
            found.append(Finding("separates", str(column), auc,
                                 f"column '{column}' alone separates the labels (single-column ROC AUC {auc:.3f}): "
                                 f"a copy of the label or a leak? drop it (data.drop_columns) unless it is truly "
                                 f"known before the label"))
    return found


def _row_hashes(features: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    frame = features.copy()
    frame["__label__"] = labels
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def duplicate_findings(features: Optional[pd.DataFrame], labels: np.ndarray, dev: np.ndarray,
                       test: np.ndarray, hashes: Optional[np.ndarray] = None) -> list[Finding]:
    """Exact rows (features and label) that the test hold-out shares with the development rows, or that
    repeat inside the development rows. ``hashes``: each row's hash, when the rows are not in memory."""
    hashes = _row_hashes(features, labels) if hashes is None else hashes
    found = []
    shared = int(np.isin(hashes[test], hashes[dev]).sum()) if len(test) else 0
    if len(test) and shared / len(test) >= DUPLICATE_SHARE:
        found.append(Finding("duplicates_test", None, shared / len(test),
                             f"{shared} of the {len(test)} test hold-out rows ({shared / len(test):.1%}) are exact "
                             f"copies of development rows: the test figures measure memory as much as "
                             f"generalisation; remove duplicate rows from the file"))
    repeated = int(len(dev) - len(np.unique(hashes[dev])))
    if len(dev) and repeated / len(dev) >= DUPLICATE_SHARE:
        found.append(Finding("duplicates_dev", None, repeated / len(dev),
                             f"{repeated} of the {len(dev)} development rows ({repeated / len(dev):.1%}) repeat an "
                             f"earlier row exactly: copies on both sides of a fold inflate the CV figures; remove "
                             f"duplicate rows from the file"))
    return found


def _checked_rows(dev: np.ndarray, seed: int) -> np.ndarray:
    rows = np.sort(dev)
    if len(rows) > MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_ROWS, replace=False))
    return rows


def leakage_findings(features: pd.DataFrame, labels: np.ndarray, dev: np.ndarray, test: np.ndarray,
                     seed: int = 0) -> list[Finding]:
    """Every check, on the development rows (the column checks on at most :data:`MAX_ROWS` of them)."""
    rows = _checked_rows(dev, seed)
    found = column_findings(features.iloc[rows].reset_index(drop=True), labels[rows], rows.astype(np.float64))
    return found + duplicate_findings(features, labels, dev, test)


def streamed_leakage_findings(table: Any, dev: np.ndarray, test: np.ndarray, seed: int = 0) -> list[Finding]:
    """:func:`leakage_findings` for rows read block by block (a :class:`~netad.data.streaming.StreamedTable`), in
    one pass: the column checks on the same rows, the duplicate checks on every row's hash (number columns
    hashed as float64, so a block that reads a column as integers hashes as one that reads it with gaps)."""
    rows = _checked_rows(dev, seed)
    picked, hashes = [], []
    for block in table.blocks:
        stop = block.start + len(block.labels)
        lo, hi = np.searchsorted(rows, [block.start, stop])
        if hi > lo:
            picked.append(block.features.iloc[rows[lo:hi] - block.start])
        numbers = {c: np.float64 for c in block.features.columns
                   if pd.api.types.is_numeric_dtype(block.features[c]) and block.features[c].dtype != bool}
        hashes.append(_row_hashes(block.features.astype(numbers), table.labels[block.start:stop]))
    features = pd.concat(picked, ignore_index=True)
    found = column_findings(features, table.labels[rows], rows.astype(np.float64))
    return found + duplicate_findings(None, table.labels, dev, test, hashes=np.concatenate(hashes))
