"""Fitted preprocessing: column kinds, imputation, log transform, scaling, one-hot encoding.

``TabularPreprocessor.fit`` sees training rows only. Its whole fitted state is plain JSON
(lists, numbers, strings), so it is saved in the checkpoint and in an exported model
without pickling, and ``transform`` reuses it at validation, test and inference time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Callable, Iterable, Optional

import numpy as np
import pandas as pd

from netad.errors import NetadWarning, UserError

UNKNOWN = "__unknown__"
TRUE_VALUES = {"true", "t", "yes", "1"}
BOOL_VALUES = TRUE_VALUES | {"false", "f", "no", "0"}
STATE_VERSION = 1


def _is_bool_column(series: pd.Series) -> bool:
    if series.dtype == bool:
        return True
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):  # pandas 3: 'str' dtype
        values = set(series.dropna().astype(str).str.strip().str.lower().unique())
        return bool(values) and values <= BOOL_VALUES and bool(values - {"0", "1"})
    return False


def parse_boolean(value: Any) -> Optional[bool]:
    """One value of a boolean column as the preprocessing reads it: True or False when its text,
    stripped and lower-cased, is one of ``BOOL_VALUES`` (true/false, t/f, yes/no, 1/0), else None.
    Every route (DataFrame, Arrow, JSON) reads booleans by this rule."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):  # its text is "1" or "0" only for 1 and 0 (and str() of a huge int is slow)
        return bool(value) if value in (0, 1) else None
    if not isinstance(value, str):  # a float's text is "1.0", a gap's "nan": not true/false or 1/0
        return None
    text = value.strip().lower()
    return text in TRUE_VALUES if text in BOOL_VALUES else None


def _boolean_column(values: pd.Series) -> np.ndarray:
    """A boolean column read by :func:`parse_boolean`, once per distinct value's text: 1.0 or 0.0,
    NaN for a value that is not a boolean (float32)."""
    if values.dtype == bool:
        return values.to_numpy(dtype=np.float32)
    try:
        text = values.astype(str)
    except UnicodeEncodeError:  # surrogates (a file that is not UTF-8): not booleans, read one by one
        text = _category_names(values)
    codes, distinct = pd.factorize(text)  # a gap: code -1, the table's last entry
    table = [np.nan if (flag := parse_boolean(v)) is None else float(flag) for v in distinct]
    return np.array(table + [np.nan], dtype=np.float32)[codes]


def _scale_into(x: np.ndarray, out: np.ndarray, scratch: np.ndarray, impute: Any, log: Any, center: Any,
                scale: Any, *, finite: bool = False) -> None:
    """The one scaling formula, for one column (scalar parameters) or a block of columns (one per
    column): gaps (NaN, inf) get the imputed value, log columns become log1p(max(x, 0)), then
    (x - center) / scale in float64, rounded once to float32 into ``out``. ``x`` is only read unless it
    is ``scratch`` itself (float64, x's shape). ``finite``: ``x`` is known to hold no gaps."""
    src = x
    if not finite:
        gaps = ~np.isfinite(x)
        if gaps.any():
            np.copyto(scratch, x)
            np.copyto(scratch, impute, where=gaps)
            src = scratch
    log = np.asarray(log, dtype=bool)
    if log.all():  # one logged column, or a block of them
        np.log1p(np.maximum(src, 0.0, out=scratch), out=scratch)
        src = scratch
    elif log.any():  # some columns of a block
        if src is not scratch:
            np.copyto(scratch, src)
            src = scratch
        scratch[:, log] = np.log1p(np.maximum(scratch[:, log], 0.0))
    np.subtract(src, center, out=scratch)
    np.divide(scratch, scale, out=out, casting="unsafe")


def _category_names(values: pd.Series) -> np.ndarray:
    """A categorical column's values as the names ``encode`` looks up."""
    try:
        return values.astype(str).to_numpy(dtype=object)
    except UnicodeEncodeError:  # bytes of a file that is not UTF-8, kept as surrogates: never a known category
        return np.array([v if isinstance(v, str) or pd.isna(v) else str(v) for v in values], dtype=object)


def mostly_addresses(values: Any) -> bool:
    """Nine in ten or more of these (distinct) values are IPv4 or IPv6 addresses."""
    import ipaddress

    named = [str(v).strip() for v in values if str(v).strip().lower() not in ("", "nan", "none")]
    hits = 0
    for value in named:
        try:
            ipaddress.ip_address(value)
            hits += 1
        except ValueError:
            pass
    return bool(named) and hits >= 0.9 * len(named)


def identifier_reason(values: pd.Series, min_rows: int = 20) -> Optional[str]:
    """Why a text column looks like an identifier rather than a category ('IP addresses', 'mostly
    distinct values ...'), or None. Such columns rarely generalise and publish training traffic."""
    text = values.dropna().astype(str).str.strip()
    if len(text) < min_rows:
        return None
    if mostly_addresses(text.unique()[:200]):
        return "IP addresses"
    distinct = text.nunique()
    if distinct >= 0.5 * len(text):
        return f"mostly distinct values: {distinct} in {len(text)} rows"
    return None


@dataclass
class Encoded:
    """Preprocessed rows in compact form: ``dense`` holds the scaled numeric then the boolean
    features (float32), ``codes`` one int64 array per categorical column (its one-hot position).
    :meth:`TabularPreprocessor.to_matrix` expands it to the full feature matrix."""

    dense: np.ndarray
    codes: list[np.ndarray]

    def take(self, rows: np.ndarray) -> "Encoded":
        """Some of its rows (indices or a boolean mask)."""
        return Encoded(self.dense[rows], [codes[rows] for codes in self.codes])


def infer_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """'boolean', 'numeric' or 'categorical' for each column."""
    kinds = {}
    for col in frame.columns:
        series = frame[col]
        if _is_bool_column(series):
            kinds[col] = "boolean"
        elif pd.api.types.is_numeric_dtype(series):
            kinds[col] = "numeric"
        else:
            kinds[col] = "categorical"
    return kinds


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def preprocessing_problem(state: Any, input_dim: Optional[int] = None) -> Optional[str]:
    """What makes a fitted preprocessing state read from a file unusable (one line), or None: checked
    before use, so a damaged or crafted file fails at load time with a reason, not in the middle of scoring."""
    if not isinstance(state, dict):
        return "the preprocessing state is missing"
    if state.get("version") != STATE_VERSION:
        return f"the preprocessing state is from an unknown version ({state.get('version')!r})"
    for key in ("input_columns", "feature_names"):
        if not _names(state.get(key)):
            return f"preprocessing '{key}' is missing or not a list of names"
    for section in ("numeric", "boolean", "categorical"):
        if not isinstance(state.get(section), dict) or not _names(state[section].get("columns")):
            return f"preprocessing '{section}.columns' is missing or not a list of names"
    numeric, n = state["numeric"], len(state["numeric"]["columns"])
    for key in ("impute", "log", "center", "scale"):
        values = numeric.get(key)
        if not isinstance(values, list) or len(values) != n or not all(isinstance(v, (int, float)) for v in values):
            return f"preprocessing 'numeric.{key}' does not hold one number per numeric column ({n})"
    categories = state["categorical"].get("categories")
    if not isinstance(categories, list) or len(categories) != len(state["categorical"]["columns"]) \
            or not all(_names(c) for c in categories):
        return "preprocessing 'categorical.categories' does not hold one list of values per text column"
    flagged = state["categorical"].get("identifier_like", {})
    if not isinstance(flagged, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in flagged.items()):
        return "preprocessing 'categorical.identifier_like' is not a mapping of column names to reasons"
    used = [c for section in ("numeric", "boolean", "categorical") for c in state[section]["columns"]]
    unknown = [c for c in used if c not in state["input_columns"]]
    if unknown:
        return f"preprocessing reads columns that are not among its input columns: {', '.join(unknown)}"
    width = n + len(state["boolean"]["columns"]) + sum(len(c) + 1 for c in categories)
    if len(state["feature_names"]) != width:
        return f"preprocessing names {len(state['feature_names'])} features but makes {width}"
    if input_dim is not None and width != input_dim:
        return f"the network reads {input_dim} features, the preprocessing makes {width}"
    baseline = state.get("baseline")
    if baseline is not None and (not isinstance(baseline, list) or len(baseline) != width or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= _FLOAT32_MAX for v in baseline)):
        return f"preprocessing 'baseline' does not hold one float32 number per feature ({width})"
    return None


_GAP = object()  # a missing value, as one value (NaN != NaN)


class _BlockStatistics:
    """What :meth:`TabularPreprocessor.fit_blocks` counts in its first pass, block by block, so that over all
    blocks it equals what one block of all the rows gives: :func:`infer_kinds`, ``nunique(dropna=False)``,
    the minimum and maximum, and text value counts (``astype(str).value_counts()``)."""

    def __init__(self) -> None:
        self.rows = 0
        self.columns: list[Any] = []
        self.dtype_kind: dict[Any, str] = {}  # 'bool', 'numeric' or 'text' (pandas dtype of every block)
        self.bool_like: dict[Any, Optional[set]] = {}  # text columns: lowered values while all are booleans
        self.distinct: dict[Any, Optional[set]] = {}  # up to two distinct values; None: more
        self.low: dict[Any, float] = {}
        self.high: dict[Any, float] = {}
        self.gaps: dict[Any, int] = {}
        self.counts: dict[Any, dict[str, int]] = {}

    def add(self, block: pd.DataFrame) -> None:
        if not self.columns:
            self.columns = list(block.columns)
        elif list(block.columns) != self.columns:
            raise UserError("training blocks differ in their columns")
        self.rows += len(block)
        for col in self.columns:
            series = block[col]
            kind = "bool" if series.dtype == bool else "numeric" if pd.api.types.is_numeric_dtype(series) else \
                "text" if series.dtype == object or isinstance(series.dtype, pd.StringDtype) else "other"
            if self.dtype_kind.setdefault(col, kind) != kind:
                self.dtype_kind[col] = "mixed"
            if kind == "text":
                values = self.bool_like.setdefault(col, set())
                if values is not None:
                    lowered = set(series.dropna().astype(str).str.strip().str.lower().unique())
                    self.bool_like[col] = values | lowered if lowered <= BOOL_VALUES else None
            if kind not in ("bool", "numeric"):
                counts = self.counts.setdefault(col, {})
                for value, n in series.astype(str).value_counts(sort=False).items():
                    counts[value] = counts.get(value, 0) + int(n)
            if kind == "numeric" and len(series):
                x = series.to_numpy(dtype=np.float64)
                gaps = int(np.isnan(x).sum())
                self.gaps[col] = self.gaps.get(col, 0) + gaps
                if gaps < len(x):
                    self.low[col] = min(self.low.get(col, np.inf), float(np.nanmin(x)))
                    self.high[col] = max(self.high.get(col, -np.inf), float(np.nanmax(x)))
            few = self.distinct.setdefault(col, set())
            if few is not None:
                for value in pd.unique(series)[:3]:
                    few.add(_GAP if pd.isna(value) else value)
                self.distinct[col] = few if len(few) <= 1 else None

    def kinds(self) -> dict[Any, str]:
        """'boolean', 'numeric' or 'categorical' for each column, as :func:`infer_kinds` on all rows."""
        out = {}
        for col in self.columns:
            kind, flags = self.dtype_kind[col], self.bool_like.get(col)
            if kind == "bool" or (kind == "text" and flags and flags - {"0", "1"}):
                out[col] = "boolean"
            elif kind == "numeric":
                out[col] = "numeric"
            else:
                out[col] = "categorical"
        return out

    def constant(self, col: Any) -> bool:
        return self.distinct[col] is not None

    def extremes(self, numeric: list[Any], impute: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each numeric column's minimum and maximum once its gaps hold ``impute``."""
        low = np.array([min(self.low.get(c, np.inf), v) if self.gaps.get(c) else self.low.get(c, v)
                        for c, v in zip(numeric, impute)], dtype=np.float64)
        high = np.array([max(self.high.get(c, -np.inf), v) if self.gaps.get(c) else self.high.get(c, v)
                         for c, v in zip(numeric, impute)], dtype=np.float64)
        return low, high


class TabularPreprocessor:
    """Turns raw feature columns into a float32 matrix; fitted on training rows only."""

    def __init__(
        self,
        scaler: str = "standard",
        log_transform: str | list[str] = "none",
        nan_policy: str = "error",
        max_categories: int = 50,
    ) -> None:
        self.scaler = scaler
        self.log_transform = log_transform
        self.nan_policy = nan_policy
        self.max_categories = max_categories
        self.state: Optional[dict[str, Any]] = None
        self._lookups: dict[int, dict[str, int]] = {}

    @classmethod
    def from_config(cls, data_cfg: Any) -> "TabularPreprocessor":
        return cls(data_cfg.scaler, data_cfg.log_transform, data_cfg.nan_policy, data_cfg.max_categories)

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame) -> "TabularPreprocessor":
        """Fit on training rows held in memory: one block, which is its own sample (so every statistic is exact)."""
        return self.fit_blocks(lambda: iter([frame]), frame)

    def fit_blocks(self, blocks: Callable[[], Iterable[pd.DataFrame]],
                   sample: pd.DataFrame | Callable[[], pd.DataFrame]) -> "TabularPreprocessor":
        """Fit on training rows that come in blocks (rows too many for memory). ``blocks()`` yields the same rows,
        in the same order, each time it is called: a first pass counts, a second fits the scaler on the imputed,
        log-transformed values. Exact over all rows: column kinds, constant columns, minimum and maximum, category
        counts and the scaler (scikit-learn's ``partial_fit``; one block is its ``fit``). From ``sample``, rows drawn
        uniformly from the same rows (all of them when they fit in memory): the median imputed for gaps
        (``nan_policy: median``), the 99th percentile ``log_transform: auto`` compares the maximum with, and the
        identifier check of text columns. ``sample`` may be a function called after the first pass (which may
        draw it)."""
        self._lookups = {}
        seen = _BlockStatistics()
        for block in blocks():
            seen.add(block)
        if seen.rows == 0:
            raise UserError("no training rows to fit the preprocessing on")
        sample = sample() if callable(sample) else sample
        kinds = seen.kinds()
        columns = list(kinds)
        constant = [c for c in columns if seen.constant(c)]
        if constant:
            warnings.warn(NetadWarning(
                f"dropping columns that are constant in the training rows: {', '.join(map(str, constant))}"),
                stacklevel=2,
            )
        if isinstance(self.log_transform, list):
            unknown = [c for c in self.log_transform if c not in columns]
            if unknown:
                raise UserError(f"data.log_transform names columns not in the data: {', '.join(unknown)}")
        numeric = [c for c, k in kinds.items() if k == "numeric" and c not in constant]
        boolean = [c for c, k in kinds.items() if k == "boolean" and c not in constant]
        categorical = [c for c, k in kinds.items() if k == "categorical" and c not in constant]

        drawn = sample[numeric].to_numpy(dtype=np.float64) if numeric else np.zeros((len(sample), 0))
        impute = self._impute_values(drawn)
        drawn = np.where(np.isnan(drawn), impute, drawn)
        low, high = seen.extremes(numeric, impute)
        log_mask = self._log_mask(numeric, low, high, drawn)
        imputed = (np.where(np.isnan(x), impute, x) for x in (b[numeric].to_numpy(dtype=np.float64) for b in blocks()))
        center, scale = self._fit_scaler((np.where(log_mask, np.log1p(np.maximum(num, 0.0)), num) for num in imputed),
                                         len(numeric))

        identifier_like = {}
        for col in categorical:
            reason = identifier_reason(sample[col])
            if reason:
                identifier_like[str(col)] = reason
                warnings.warn(NetadWarning(
                    f"column '{col}' looks like an identifier ({reason}): such a column rarely generalises to new "
                    f"traffic, and an exported model publishes up to {self.max_categories} of its training values; "
                    f"consider data.drop_columns"), stacklevel=2)
        categories = []
        for col in categorical:
            # most frequent first, ties broken by name so the encoding is deterministic
            ordered = sorted(seen.counts[col].items(), key=lambda kv: (-kv[1], kv[0]))
            categories.append([name for name, _ in ordered[: self.max_categories]])

        feature_names = list(map(str, numeric)) + list(map(str, boolean))
        for col, cats in zip(categorical, categories):
            feature_names += [f"{col}={c}" for c in cats] + [f"{col}={UNKNOWN}"]
        self.state = {
            "version": STATE_VERSION,
            "input_columns": list(map(str, columns)),
            "kinds": {str(k): v for k, v in kinds.items()},
            "dropped_constant": list(map(str, constant)),
            "numeric": {
                "columns": list(map(str, numeric)),
                "impute": impute.tolist(),
                "log": log_mask.tolist(),
                "center": center.tolist(),
                "scale": scale.tolist(),
            },
            "boolean": {"columns": list(map(str, boolean))},
            "categorical": {"columns": list(map(str, categorical)), "categories": categories,
                            "identifier_like": identifier_like},
            "feature_names": feature_names,
            "scaler": self.scaler,
            "nan_policy": self.nan_policy,  # at inference: impute (median, zero) or refuse rows with gaps
        }
        return self

    def fit_baseline(self, x: np.ndarray) -> "TabularPreprocessor":
        """Store the reference row explanations are measured against (``state['baseline']``, one value per
        feature): a typical row of ``x``, preprocessed rows (training: the normal training rows). Each numeric
        feature gets its median, each boolean its most frequent value, each one-hot block its most frequent
        category (ties: the first),
        so the reference is a row real traffic could hold."""
        self._check_fitted()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.output_dim or not len(x):
            raise ValueError(f"fit_baseline needs preprocessed rows of {self.output_dim} features, got {x.shape}")
        n = len(self.state["numeric"]["columns"])
        k = n + len(self.state["boolean"]["columns"])
        baseline = np.zeros(self.output_dim, dtype=np.float64)
        baseline[:n] = np.median(x[:, :n], axis=0)
        baseline[n:k] = x[:, n:k].mean(axis=0) >= 0.5  # a flag's most frequent value (ties: set)
        offset = k
        for size in self.block_sizes():
            baseline[offset + int(np.argmax(x[:, offset:offset + size].sum(axis=0)))] = 1.0
            offset += size
        self.state["baseline"] = [float(v) for v in baseline.astype(np.float32)]
        return self

    def column_starts(self) -> np.ndarray:
        """Where each model column's features start (numeric, boolean, then each one-hot block): per-feature
        values summed with ``np.add.reduceat(values, starts, axis=1)`` are per column."""
        st = self.state
        k = len(st["numeric"]["columns"]) + len(st["boolean"]["columns"])
        return np.concatenate([np.arange(k), k + np.cumsum([0] + self.block_sizes()[:-1])]).astype(np.int64) \
            if self.block_sizes() else np.arange(k, dtype=np.int64)

    def model_columns(self) -> list[str]:
        """The columns the features come from, in :meth:`column_starts` order (constant columns are not among them)."""
        st = self.state
        return list(st["numeric"]["columns"]) + list(st["boolean"]["columns"]) + list(st["categorical"]["columns"])

    def _impute_values(self, num: np.ndarray) -> np.ndarray:
        if num.shape[1] == 0:
            return np.zeros(0)
        if self.nan_policy == "median":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(num, axis=0)
            return np.nan_to_num(med, nan=0.0)
        return np.zeros(num.shape[1])

    def _log_mask(self, numeric: list[str], low: np.ndarray, high: np.ndarray, drawn: np.ndarray) -> np.ndarray:
        """Which numeric columns are log-transformed: ``low``/``high`` are each column's minimum and maximum
        (gaps imputed), ``drawn`` the sampled rows (gaps imputed)."""
        if self.log_transform == "none" or len(numeric) == 0:
            return np.zeros(len(numeric), dtype=bool)
        if isinstance(self.log_transform, list):
            return np.array([c in self.log_transform for c in numeric], dtype=bool)
        # auto: non-negative counts whose tail is heavy (max far above the 99th percentile scale)
        nonneg = low >= 0
        q99 = np.percentile(drawn, 99, axis=0)
        heavy = high > 10 * np.maximum(q99, 1.0)
        spread = high > 100
        return nonneg & (heavy | spread)

    def _fit_scaler(self, blocks: Iterable[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
        """Center and scale of each of ``width`` numeric columns, from blocks of their (imputed, log-transformed)
        values (not read when there is nothing to scale)."""
        from sklearn.preprocessing import MinMaxScaler, StandardScaler  # fitting only: scoring never loads sklearn

        if self.scaler == "none" or width == 0:
            return np.zeros(width), np.ones(width)
        sk = StandardScaler() if self.scaler == "standard" else MinMaxScaler()
        for num in blocks:
            if len(num):
                sk.partial_fit(num)
        if self.scaler == "standard":
            return sk.mean_, sk.scale_
        rng = sk.data_max_ - sk.data_min_
        return sk.data_min_, np.where(rng > 0, rng, 1.0)

    # ------------------------------------------------------------ transform
    @property
    def output_dim(self) -> int:
        self._check_fitted()
        return len(self.state["feature_names"])

    def _check_fitted(self) -> None:
        if self.state is None:
            raise RuntimeError("TabularPreprocessor is not fitted: call fit() on training rows first")

    def check_schema(self, frame: pd.DataFrame) -> None:
        self._check_fitted()
        missing = [c for c in self.state["input_columns"] if c not in frame.columns]
        if missing:
            raise UserError(f"data is missing columns the model was trained on: {', '.join(missing)}")

    def row_problems(self, frame: pd.DataFrame) -> np.ndarray:
        """Why each row cannot be scored ('' when it can): a non-number in a numeric column (for a model
        whose NaN policy imputes, a gap like any other, as in training), a non-boolean in a boolean one, a
        missing value the training-time NaN policy did not impute, or a value whose scaled feature would
        overflow float32. Unseen categories are not a problem (they go to the unknown bucket)."""
        self.check_schema(frame)
        st = self.state
        reasons = np.full(len(frame), "", dtype=object)
        imputes = st.get("nan_policy", "error") in ("median", "zero")

        def note(mask: np.ndarray, text: str) -> None:
            fresh = mask & (reasons == "")
            reasons[fresh] = text

        scratch = np.empty(len(frame), dtype=np.float64)
        scaled = np.empty(len(frame), dtype=np.float32)
        for j, col in enumerate(st["numeric"]["columns"]):
            raw = frame[col]
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if not imputes:
                note(raw.notna().to_numpy() & np.isnan(values), f"column '{col}': not a number")
                note(~np.isfinite(values), f"column '{col}': missing or infinite value")
            with np.errstate(over="ignore"):  # the encoder's own formula: too large is what it makes inf
                _scale_into(values, scaled, scratch, *self._column_parameters(j))
            note(np.isfinite(values) & ~np.isfinite(scaled),
                 f"column '{col}': value too large for the model (overflows its float32 features)")
        for col in st["boolean"]["columns"]:
            raw = frame[col]
            if raw.dtype == bool:
                continue
            note(raw.isna().to_numpy(), f"column '{col}': missing value")
            note(np.isnan(_boolean_column(raw)), f"column '{col}': not true/false or 1/0")
        return reasons

    def unparsable_numbers(self, frame: pd.DataFrame) -> dict[str, int]:
        """{numeric column: cells that hold something other than a number}: gaps for a model that imputes."""
        self._check_fitted()
        counts = {}
        for col in self.state["numeric"]["columns"]:
            raw = frame[col]
            bad = int((raw.notna() & pd.to_numeric(raw, errors="coerce").isna()).sum())
            if bad:
                counts[col] = bad
        return counts

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The float32 feature matrix (``state['feature_names']`` order)."""
        return self.to_matrix(self.encode(frame))

    def encode(self, frame: pd.DataFrame) -> "Encoded":
        """Rows of a DataFrame as :class:`Encoded` (the compact form of :meth:`transform`): numbers
        parsed by pandas (anything else a gap), booleans by :func:`parse_boolean` (anything else 0),
        categories by their text, then :meth:`encode_columns`."""
        self.check_schema(frame)
        st = self.state
        cols = st["numeric"]["columns"]
        num = (frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, copy=True)
               if cols else np.zeros((len(frame), 0)))
        booleans = [np.nan_to_num(_boolean_column(frame[col]), nan=0.0) for col in st["boolean"]["columns"]]
        categories = [_category_names(frame[col]) for col in st["categorical"]["columns"]]
        return self.encode_columns(num, booleans, categories, owned=True)

    def csv_dtypes(self) -> dict[str, type]:
        """``dtype=`` for reading new rows with pandas: the category columns as text, as they were in
        the training rows. (Left to itself, pandas reads a column whose values in that file or chunk
        all look like numbers as numbers: "01" as 1, and "1" as 1.0 when there is also a gap; neither
        is the category the model learned.)"""
        self._check_fitted()
        return {c: str for c in self.state["categorical"]["columns"]}

    def gap_code(self, i: int) -> int:
        """The code :meth:`encode` gives a missing value in categorical column ``i``: under pandas 3
        NaN stays NaN (never a category: the unknown bucket); under pandas 2 it reads as "nan", a
        category when the training rows had gaps there."""
        return int(self.category_codes(i, _category_names(pd.Series([np.nan], dtype=object)))[0])

    def category_lookup(self, i: int) -> dict[str, int]:
        """Category -> position in the one-hot block of categorical column ``i``; others go to the
        unknown bucket at position ``len(categories)``."""
        if i not in self._lookups:
            self._lookups[i] = {c: j for j, c in enumerate(self.state["categorical"]["categories"][i])}
        return self._lookups[i]

    def category_codes(self, i: int, values: Any) -> np.ndarray:
        """The one-hot positions of categorical column ``i``'s values (its names, as text)."""
        lookup, unknown = self.category_lookup(i), len(self.state["categorical"]["categories"][i])
        return np.fromiter(map(lookup.get, values, repeat(unknown)), dtype=np.int64, count=len(values))

    def _column_parameters(self, j: int) -> tuple[float, bool, float, float]:
        ncfg = self.state["numeric"]
        return float(ncfg["impute"][j]), bool(ncfg["log"][j]), float(ncfg["center"][j]), float(ncfg["scale"][j])

    def encode_columns(self, numeric: Any, booleans: list[Any], categories: list[Any], *, owned: bool = False,
                       finite: bool = False) -> "Encoded":
        """Raw column values as :class:`Encoded`: ``numeric`` as for :meth:`encode_arrays`, ``booleans``
        one 0/1 array per boolean column (:func:`parse_boolean`), ``categories`` the values of each
        categorical column as text, looked up here. The DataFrame and JSON routes end here."""
        codes = [self.category_codes(i, values) for i, values in enumerate(categories)]
        return self.encode_arrays(numeric, booleans, codes, owned=owned, finite=finite)

    def encode_arrays(self, numeric: Any, booleans: list[np.ndarray], codes: list[np.ndarray], *,
                      owned: bool = False, finite: bool = False) -> "Encoded":
        """The shared last step of every route: raw numeric values (float64, NaN for gaps) go through
        the one scaling formula, booleans (0/1) are written beside them, ``codes`` (from
        :meth:`category_codes`) index each categorical column's one-hot block.

        ``numeric`` is a 2-D array (rows x numeric columns), scaled as one block (few numpy calls for
        few rows), or a list of one array per numeric column, scaled column by column so each stays in
        cache (large blocks of a file; the columns are only read). Both give the same values.
        ``owned``: a 2-D float64 array may serve as scratch space (it is overwritten). ``finite``: the
        caller has checked there are no gaps. A value too large for float32 becomes inf (callers refuse it)."""
        ncfg = self.state["numeric"]
        with np.errstate(over="ignore"):
            if isinstance(numeric, np.ndarray):
                n, k = numeric.shape
                dense = np.empty((n, k + len(booleans)), dtype=np.float32)
                if k:
                    x = np.asarray(numeric, dtype=np.float64)
                    own = (owned or x is not numeric) and x.flags.writeable
                    _scale_into(x, dense[:, :k], x if own else np.empty((n, k)),
                                *(np.asarray(ncfg[key], dtype=bool if key == "log" else np.float64)
                                  for key in ("impute", "log", "center", "scale")), finite=finite)
            else:
                k = len(numeric)
                n = len(numeric[0]) if k else len((booleans or codes)[0]) if (booleans or codes) else 0
                dense = np.empty((k + len(booleans), n), dtype=np.float32).T  # column-major: contiguous columns
                scratch = np.empty(n, dtype=np.float64)
                for j, column in enumerate(numeric):
                    _scale_into(np.asarray(column, dtype=np.float64), dense[:, j], scratch,
                                *self._column_parameters(j), finite=finite)
        for j, b in enumerate(booleans):
            dense[:, k + j] = b
        return Encoded(dense, list(codes))

    def block_sizes(self) -> list[int]:
        """Width of each categorical column's one-hot block (its categories plus the unknown bucket)."""
        return [len(c) + 1 for c in self.state["categorical"]["categories"]]

    def to_matrix(self, enc: "Encoded") -> np.ndarray:
        n, width = enc.dense.shape[0], self.output_dim
        out = np.zeros((n, width), dtype=np.float32)
        out[:, : enc.dense.shape[1]] = enc.dense
        offset = enc.dense.shape[1]
        for codes, size in zip(enc.codes, self.block_sizes()):
            out[np.arange(n), offset + codes] = 1.0
            offset += size
        return out

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.fit(frame).transform(frame)

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return self.state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TabularPreprocessor":
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise UserError("preprocessing state is missing or from an unknown version")
        pre = cls(scaler=state.get("scaler", "standard"))
        pre.state = state
        return pre
