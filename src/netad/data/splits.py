"""Stratified test hold-out, k folds over the rest, and an inner validation split per fold.

Each fold's rows fall in three disjoint parts:
- ``train``: fits the preprocessing and the weights;
- ``val``: early stopping, checkpoint selection and the decision threshold;
- ``eval``: the fold's held-out part, touched only to measure (out-of-fold predictions).
The test hold-out is never used by training; ``test.py`` measures on it.

With ``groups`` (attack types or families: the by_type / by_family strategies), each group's anomalous rows
fall in one fold's held-out part, and normal rows are spread over all folds, so every fold's model is
measured on attack types that none of its training or validation rows hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, train_test_split

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
    groups: Optional[np.ndarray] = None,
    group_kind: str = "attack type",
) -> list[FoldSplit]:
    """k folds of the development rows ``dev``; ``groups`` (one value per row of the data, read for its
    anomalous rows): held-out folds by group, see the module docstring."""
    if groups is not None:
        return _folds_by_group(dev, labels, groups, n_splits, shuffle, random_state, val_size, group_kind)
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


def _folds_by_group(dev: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_splits: int, shuffle: bool,
                    random_state: int, val_size: float, group_kind: str) -> list[FoldSplit]:
    """Anomalous rows by group (scikit-learn's GroupKFold: the groups' rows balanced over the folds), normal
    rows by KFold; fold k holds out group fold k and normal fold k."""
    attack = dev[labels[dev] == 1]
    normal = dev[labels[dev] == 0]
    names = np.unique(groups[attack]).tolist()
    if len(names) < n_splits:
        raise UserError(f"cross_validation.strategy by_{group_kind.split()[-1]}: the development rows hold "
                        f"{len(names)} {group_kind}{'s' if len(names) != 1 else ''} ({', '.join(map(str, names))}), "
                        f"fewer than n_splits={n_splits}; lower cross_validation.n_splits")
    if len(normal) < 2 * n_splits:
        raise UserError(f"only {len(normal)} normal rows after the test hold-out, too few for n_splits={n_splits}: "
                        f"it needs at least {2 * n_splits}; lower cross_validation.n_splits or use more data")
    attack_folds = GroupKFold(n_splits).split(attack, groups=groups[attack])
    normal_folds = KFold(n_splits, shuffle=shuffle, random_state=random_state if shuffle else None).split(normal)
    folds = []
    for k, ((a_fit, a_eval), (n_fit, n_eval)) in enumerate(zip(attack_folds, normal_folds)):
        fit_rows = np.sort(np.concatenate([attack[a_fit], normal[n_fit]]))
        train, val = split_val(fit_rows, labels, val_size, random_state + k)
        folds.append(FoldSplit(k, train, val, np.sort(np.concatenate([attack[a_eval], normal[n_eval]]))))
    return folds
