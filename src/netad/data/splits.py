"""Stratified test hold-out, k folds over the rest, and an inner validation split per fold.

Each fold's rows fall in three disjoint parts:
- ``train``: fits the preprocessing and the weights;
- ``val``: early stopping, checkpoint selection and the decision threshold;
- ``eval``: the fold's held-out part, touched only to measure (out-of-fold predictions).
The test hold-out is never used by training; ``test.py`` measures on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from netad.errors import UserError


@dataclass
class FoldSplit:
    fold: int
    train: np.ndarray
    val: np.ndarray
    eval: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def _check_counts(labels: np.ndarray, needed: int, what: str, why: str = "") -> None:
    """Both classes need at least ``needed`` rows; ``why`` says what they are needed for."""
    counts = np.bincount(labels, minlength=2)
    if counts.min() < needed:
        cls = "anomalous" if counts[1] < counts[0] else "normal"
        why = why or f"too few for {needed} stratified parts"
        raise UserError(f"only {counts.min()} {cls} rows {what}, {why}; lower cross_validation.n_splits or use more data")


def split_test(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (development rows, test rows) as sorted row indices."""
    _check_counts(labels, 2, "in the data")
    idx = np.arange(len(labels))
    dev, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    return np.sort(dev), np.sort(test)


def split_val(indices: np.ndarray, labels: np.ndarray, val_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) of ``indices`` (``labels`` is indexed by row number)."""
    sub = labels[indices]
    _check_counts(sub, 2, "left for the train/validation split")
    train, val = train_test_split(indices, test_size=val_size, stratify=sub, random_state=seed)
    return np.sort(train), np.sort(val)


def make_folds(
    dev: np.ndarray,
    labels: np.ndarray,
    n_splits: int,
    shuffle: bool,
    random_state: int,
    stratify: bool,
    val_size: float,
) -> list[FoldSplit]:
    sub = labels[dev]
    # each fold needs positives in its eval part and in the inner validation split of its training part
    needed = 2 * n_splits if stratify else n_splits
    _check_counts(sub, needed, "after the test hold-out",
                  f"too few for n_splits={n_splits}: it needs at least {needed} (one per fold's held-out part "
                  f"and one per fold's validation split)")
    splitter = (
        StratifiedKFold(n_splits, shuffle=shuffle, random_state=random_state if shuffle else None)
        if stratify
        else KFold(n_splits, shuffle=shuffle, random_state=random_state if shuffle else None)
    )
    folds = []
    for k, (fit_pos, eval_pos) in enumerate(splitter.split(dev, sub)):
        train, val = split_val(dev[fit_pos], labels, val_size, random_state + k)
        folds.append(FoldSplit(k, train, val, np.sort(dev[eval_pos])))
    return folds
