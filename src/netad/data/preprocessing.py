"""Fitted preprocessing: column kinds, imputation, log transform, scaling, one-hot encoding.

``TabularPreprocessor.fit`` sees training rows only. Its whole fitted state is plain JSON
(lists, numbers, strings), so it is saved in the checkpoint and in an exported model
without pickling, and ``transform`` reuses it at validation, test and inference time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from netad.errors import NetadWarning, UserError

UNKNOWN = "__unknown__"
TRUE_VALUES = {"true", "t", "yes", "1"}
BOOL_VALUES = TRUE_VALUES | {"false", "f", "no", "0"}
STATE_VERSION = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_bool_column(series: pd.Series) -> bool:
    if series.dtype == bool:
        return True
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):  # pandas 3: 'str' dtype
        values = set(series.dropna().astype(str).str.strip().str.lower().unique())
        return bool(values) and values <= BOOL_VALUES and bool(values - {"0", "1"})
    return False


def _bool_to_float(series: pd.Series) -> np.ndarray:
    if series.dtype == bool:
        return series.to_numpy(dtype=np.float32)
    return series.astype(str).str.strip().str.lower().isin(TRUE_VALUES).to_numpy(dtype=np.float32)


def _float64(x: np.ndarray, owned: bool) -> np.ndarray:
    """``x`` itself when it may be changed in place (owned, float64, writable), else a float64 copy."""
    return x if owned and x.dtype == np.float64 and x.flags.writeable else np.array(x, dtype=np.float64)


def _scale(x: np.ndarray, impute: Any, log: Any, center: Any, scale: Any) -> np.ndarray:
    """Impute gaps, log-transform and scale raw numeric values in place: a whole (rows x columns)
    matrix with per-column vectors, or one column with scalars. :func:`_scale_column` is the same
    formula without the copy (a unit test holds the two equal bit for bit)."""
    gaps = ~np.isfinite(x)
    if gaps.any():
        x[gaps] = np.broadcast_to(impute, x.shape)[gaps]
    log = np.asarray(log, dtype=bool)
    if log.ndim == 0:
        if log:
            np.log1p(np.maximum(x, 0.0, out=x), out=x)
    elif log.any():
        x[:, log] = np.log1p(np.maximum(x[:, log], 0.0))
    x -= center
    x /= scale
    return x


def _scale_column(x: np.ndarray, out: np.ndarray, scratch: np.ndarray, impute: float, log: bool, center: float,
                  scale: float, *, finite: bool = False) -> None:
    """:func:`_scale` for one column, bit for bit: read from ``x`` (left as it is), written to ``out``
    (float32) through ``scratch`` (float64, same length), with no copy of the column on the way.
    ``finite``: ``x`` is known to hold no gaps."""
    src = x
    if not finite:
        gaps = ~np.isfinite(x)
        if gaps.any():
            np.copyto(scratch, x)
            scratch[gaps] = impute
            src = scratch
    if log:
        np.log1p(np.maximum(src, 0.0, out=scratch), out=scratch)
        src = scratch
    np.subtract(src, center, out=scratch)
    np.divide(scratch, scale, out=out, casting="unsafe")  # float64 quotient, rounded once to float32


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
    return None


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
        self._lookups = {}
        kinds = infer_kinds(frame)
        constant = [c for c in frame.columns if frame[c].nunique(dropna=False) <= 1]
        if constant:
            warnings.warn(NetadWarning(
                f"dropping columns that are constant in the training rows: {', '.join(map(str, constant))}"),
                stacklevel=2,
            )
        if isinstance(self.log_transform, list):
            unknown = [c for c in self.log_transform if c not in frame.columns]
            if unknown:
                raise UserError(f"data.log_transform names columns not in the data: {', '.join(unknown)}")
        numeric = [c for c, k in kinds.items() if k == "numeric" and c not in constant]
        boolean = [c for c, k in kinds.items() if k == "boolean" and c not in constant]
        categorical = [c for c, k in kinds.items() if k == "categorical" and c not in constant]

        num = frame[numeric].to_numpy(dtype=np.float64) if numeric else np.zeros((len(frame), 0))
        impute = self._impute_values(num)
        num = np.where(np.isnan(num), impute, num)
        log_mask = self._log_mask(numeric, num)
        num = np.where(log_mask, np.log1p(np.maximum(num, 0.0)), num)
        center, scale = self._fit_scaler(num)

        identifier_like = {}
        for col in categorical:
            reason = identifier_reason(frame[col])
            if reason:
                identifier_like[str(col)] = reason
                warnings.warn(NetadWarning(
                    f"column '{col}' looks like an identifier ({reason}): such a column rarely generalises to new "
                    f"traffic, and an exported model publishes up to {self.max_categories} of its training values; "
                    f"consider data.drop_columns"), stacklevel=2)
        categories = []
        for col in categorical:
            counts = frame[col].astype(str).value_counts(sort=True)
            # most frequent first, ties broken by name so the encoding is deterministic
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            categories.append([name for name, _ in ordered[: self.max_categories]])

        feature_names = list(map(str, numeric)) + list(map(str, boolean))
        for col, cats in zip(categorical, categories):
            feature_names += [f"{col}={c}" for c in cats] + [f"{col}={UNKNOWN}"]
        self.state = {
            "version": STATE_VERSION,
            "input_columns": list(map(str, frame.columns)),
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

    def _impute_values(self, num: np.ndarray) -> np.ndarray:
        if num.shape[1] == 0:
            return np.zeros(0)
        if self.nan_policy == "median":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(num, axis=0)
            return np.nan_to_num(med, nan=0.0)
        return np.zeros(num.shape[1])

    def _log_mask(self, numeric: list[str], num: np.ndarray) -> np.ndarray:
        if self.log_transform == "none" or num.shape[1] == 0:
            return np.zeros(len(numeric), dtype=bool)
        if isinstance(self.log_transform, list):
            return np.array([c in self.log_transform for c in numeric], dtype=bool)
        # auto: non-negative counts whose tail is heavy (max far above the 99th percentile scale)
        nonneg = num.min(axis=0) >= 0
        q99 = np.percentile(num, 99, axis=0)
        heavy = num.max(axis=0) > 10 * np.maximum(q99, 1.0)
        spread = num.max(axis=0) > 100
        return nonneg & (heavy | spread)

    def _fit_scaler(self, num: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = num.shape[1]
        if self.scaler == "none" or width == 0:
            return np.zeros(width), np.ones(width)
        if self.scaler == "standard":
            sk = StandardScaler().fit(num)
            return sk.mean_, sk.scale_
        sk = MinMaxScaler().fit(num)
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

        ncfg = st["numeric"]
        for j, col in enumerate(ncfg["columns"]):
            raw = frame[col]
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if not imputes:
                note(raw.notna().to_numpy() & np.isnan(values), f"column '{col}': not a number")
                note(~np.isfinite(values), f"column '{col}': missing or infinite value")
            finite = np.isfinite(values)
            if finite.any():
                with np.errstate(over="ignore", invalid="ignore"):
                    scaled = _scale(values[finite].reshape(-1, 1).copy(), *(np.asarray([ncfg[key][j]]) for key in
                                                                           ("impute", "log", "center", "scale")))
                too_large = np.zeros(len(values), dtype=bool)
                too_large[finite] = ~(np.abs(scaled[:, 0]) <= FLOAT32_MAX)
                note(too_large, f"column '{col}': value too large for the model (overflows its float32 features)")
        for col in st["boolean"]["columns"]:
            raw = frame[col]
            if raw.dtype == bool:
                continue
            text = raw.astype(str).str.strip().str.lower()
            note(raw.isna().to_numpy(), f"column '{col}': missing value")
            note(~text.isin(BOOL_VALUES).to_numpy(), f"column '{col}': not true/false or 1/0")
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
        """Rows of a DataFrame as :class:`Encoded` (the compact form of :meth:`transform`)."""
        self.check_schema(frame)
        st = self.state
        ncfg = st["numeric"]
        num = (frame[ncfg["columns"]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, copy=True)
               if ncfg["columns"] else np.zeros((len(frame), 0)))
        booleans = [_bool_to_float(frame[col]) for col in st["boolean"]["columns"]]
        codes = [self.category_codes(i, _category_names(frame[col]))
                 for i, col in enumerate(st["categorical"]["columns"])]
        return self.encode_arrays(num, booleans, codes, owned=True)

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
        lookup, unknown = self.category_lookup(i), len(self.state["categorical"]["categories"][i])
        return np.fromiter((lookup.get(v, unknown) for v in values), dtype=np.int64, count=len(values))

    def encode_arrays(self, numeric: Any, booleans: list[np.ndarray], codes: list[np.ndarray], *,
                      owned: bool = False, finite: bool = False) -> "Encoded":
        """The shared last step: raw numeric values (float64, NaN for gaps) are imputed, log-transformed
        and scaled; booleans are 0/1; ``codes`` index each categorical column's one-hot block.

        ``numeric`` is a 2-D array (rows x numeric columns), worked on whole, or a list of one array per
        numeric column, worked on column by column so each stays in cache (large blocks of a file; the
        columns are only read). ``owned``: a 2-D array may be changed in place. ``finite``: the caller
        has checked there are no gaps."""
        ncfg = self.state["numeric"]
        if isinstance(numeric, np.ndarray):
            n, k = numeric.shape
            dense = np.empty((n, k + len(booleans)), dtype=np.float32)
            if k:
                dense[:, :k] = _scale(_float64(numeric, owned),
                                      *(np.asarray(ncfg[key]) for key in ("impute", "log", "center", "scale")))
        else:
            k = len(numeric)
            n = len(numeric[0]) if k else len((booleans or codes)[0]) if (booleans or codes) else 0
            dense = np.empty((k + len(booleans), n), dtype=np.float32).T  # column-major: contiguous columns
            scratch = np.empty(n, dtype=np.float64)
            for j, column in enumerate(numeric):
                _scale_column(np.asarray(column, dtype=np.float64), dense[:, j], scratch,
                              *(ncfg[key][j] for key in ("impute", "log", "center", "scale")), finite=finite)
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
