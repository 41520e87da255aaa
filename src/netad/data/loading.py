"""Read labelled records (CSV or Parquet; a file, a folder or a glob) into features and 0/1 labels, with
clear errors for bad input."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from netad.config import DataConfig
from netad.data.compression import compression_of, decompressing
from netad.data.sources import (check_named_columns, data_files, file_digest, is_parquet, schema_mismatch,
                                 with_text_columns)  # noqa: F401 (file_digest: re-exported)
from netad.errors import UserError

log = logging.getLogger("netad")

_TRUE = {"true", "t", "yes"}
_FALSE = {"false", "f", "no"}


@dataclass
class LabelledTable:
    """Raw feature columns (not yet encoded or scaled) and 0/1 labels (1 = anomaly)."""

    features: pd.DataFrame
    labels: np.ndarray
    source: str
    #: each row's attack type as text (``data.type_column``), or None when the config names no type column
    types: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.labels)


def read_frame(spec: str | Path, column_names: Optional[list[str]] = None,
               text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Every file ``spec`` names (see :mod:`netad.data.sources`), one after the other, as one frame. The files
    must share their columns (in any order; the first file's order is kept)."""
    files = data_files(spec)
    frames = [read_file(f, column_names, text_columns) for f in files]
    first = frames[0]
    for f, frame in zip(files[1:], frames[1:]):
        problem = schema_mismatch(f, frame.columns, files[0], first.columns)
        if problem:
            raise UserError(problem)
    if len(frames) == 1:
        return first
    return pd.concat([frame[first.columns] for frame in frames], ignore_index=True)


def read_file(path: str | Path, column_names: Optional[list[str]] = None,
              text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """One CSV or Parquet file (see :func:`read_csv`, :func:`read_parquet`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"data file is empty: {path}")
    if is_parquet(path):
        return read_parquet(path, column_names, text_columns)
    return read_csv(path, column_names, text_columns)


def read_parquet(path: str | Path, column_names: Optional[list[str]] = None,
                 text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A Parquet file with the column types of its schema, except ``text_columns``, read as text (see
    :func:`read_csv`), and dictionary (category) columns as their values. ``column_names``, which name the
    columns of CSV files without a header, must be its columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    check_named_columns(path, table.column_names, column_names)
    table = with_text_columns(table, table.column_names, text_columns)
    if table.num_rows == 0:
        raise UserError(f"data file has no rows: {path}")
    return table.to_pandas()


def read_csv(path: str | Path, column_names: Optional[list[str]] = None,
             text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The CSV as pandas infers it, except ``text_columns``, read as text: a model's category
    columns in a file other than its training file, where pandas might read "01" as a number."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"data file is empty: {path}")
    compression = compression_of(path)  # by the first bytes: a compressed file need not be named .gz
    try:
        with decompressing(path, compression):
            if column_names:
                frame = pd.read_csv(path, header=None, low_memory=False, compression=compression,
                                    dtype={column_names.index(c): str for c in text_columns if c in column_names})
                if frame.shape[1] != len(column_names):
                    raise UserError(
                        f"{path}: has {frame.shape[1]} columns but data.column_names lists {len(column_names)}"
                    )
                frame.columns = column_names
            else:
                frame = pd.read_csv(path, low_memory=False, compression=compression,
                                    dtype={c: str for c in text_columns})
    except pd.errors.EmptyDataError:
        raise UserError(f"data file is empty: {path}") from None
    except pd.errors.ParserError as exc:
        raise UserError(f"{path}: cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
                        f"{' after decompression' if compression else ''}); save it as UTF-8") from None
    if frame.empty:
        raise UserError(f"data file has no rows: {path}")
    return frame


def numbers_with_bad_cells(frame: pd.DataFrame, source: Any, keep_text: Sequence[str] = (),
                           max_share: float = 0.05, min_numbers: int = 20) -> pd.DataFrame:
    """Text columns that hold numbers except in a few cells (``?``, ``"1,234"``, ``n/a``) become number
    columns with those cells missing, and a warning names the column, the count and some values: one bad
    cell must not silently turn a number column into categories (whose one-hot codes learn nothing).
    The data's NaN policy then drops, imputes or refuses those rows. ``keep_text``: columns read as text
    on purpose (a model's category columns)."""
    out = frame
    for col in frame.columns:
        series = frame[col]
        if col in keep_text or not (series.dtype == object or isinstance(series.dtype, pd.StringDtype)):
            continue
        text = series.astype(str).str.strip()
        present = series.notna() & (text != "")
        numbers = pd.to_numeric(series.where(present), errors="coerce")
        bad = present & numbers.isna()
        n_bad, n_good = int(bad.sum()), int(numbers.notna().sum())
        if n_bad == 0 or n_good < min_numbers or n_bad > max_share * (n_bad + n_good):
            continue
        examples = ", ".join(repr(v) for v in pd.unique(text[bad])[:3])
        log.warning(f"{source}: column '{col}' holds numbers except in {n_bad} of {n_bad + n_good} cells "
                    f"({examples}): kept as a number column, those cells read as missing values "
                    f"(data.nan_policy decides what happens to their rows)")
        if out is frame:
            out = frame.copy()
        out[col] = numbers
    return out


def _as_bool(series: pd.Series) -> Optional[pd.Series]:
    """Map True/False-like values to 0/1, or None if the column is not boolean."""
    if series.dtype == bool:
        return series.astype(np.int8)
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):  # pandas 3: 'str' dtype
        lowered = series.astype(str).str.strip().str.lower()
        if set(lowered.unique()) <= (_TRUE | _FALSE):
            return lowered.isin(_TRUE).astype(np.int8)
    return None


def encode_labels(raw: pd.Series, column: str, normal_value: Any, allow_one_class: bool = False) -> np.ndarray:
    """0 = normal, 1 = anomaly. Strings need ``normal_value``; numbers must be 0/1 unless it is set.

    Training needs both classes; evaluation data (``allow_one_class``) may hold only one.
    """
    if raw.isna().any():
        raise UserError(f"label column '{column}' has {int(raw.isna().sum())} empty values")
    if normal_value is not None:
        text = raw.astype(str).str.strip()
        normal = text == str(normal_value).strip()
        if pd.api.types.is_numeric_dtype(raw) and not isinstance(normal_value, str):
            normal = raw == normal_value
        else:
            _warn_near_misses(text[~normal], column, normal_value)
        labels = (~normal).to_numpy().astype(np.int64)
    else:
        as_bool = _as_bool(raw)
        if as_bool is not None:
            labels = as_bool.to_numpy().astype(np.int64)
        elif pd.api.types.is_numeric_dtype(raw) and set(np.unique(raw.to_numpy())) <= {0, 1}:
            labels = raw.to_numpy().astype(np.int64)
        else:
            examples = ", ".join(repr(v) for v in list(pd.unique(raw))[:4])
            raise UserError(
                f"label column '{column}' holds values other than 0/1 ({examples}, ...): "
                f"set data.normal_value to the value that means normal"
            )
    classes = np.unique(labels)
    if classes.size < 2 and not allow_one_class:
        which = "normal" if classes[0] == 0 else "anomalous"
        raise UserError(f"label column '{column}' has only one class (all rows are {which}); need both")
    return labels


def _warn_near_misses(others: pd.Series, column: str, normal_value: Any) -> None:
    """Label values that differ from ``normal_value`` only by case or spaces count as anomalies: say so."""
    def squash(v: Any) -> str:
        return "".join(str(v).split()).casefold()

    target = squash(normal_value)
    counts = others[others.map(squash) == target].value_counts()
    if len(counts):
        found = ", ".join(f"'{v}' ({n} rows)" for v, n in counts.items())
        log.warning(f"label column '{column}': {found} differ from data.normal_value '{normal_value}' only by "
                    f"case or spaces and count as anomalies; set data.normal_value to the exact value if they are "
                    f"normal traffic")


def near_miss(name: str, columns: Sequence[Any], key: str) -> str:
    """'; the file has 'X ': set KEY to it' when a column differs from ``name`` only by surrounding spaces or
    case (CIC-IDS2017's ' Label'), else ''."""
    squash = str(name).strip().casefold()
    close = [str(c) for c in columns if str(c).strip().casefold() == squash and str(c) != str(name)]
    return f"; the file has {close[0]!r}: set {key} to it (quoted, spaces and all)" if close else ""


def _columns_list(frame: pd.DataFrame) -> str:
    return f"{', '.join(map(str, frame.columns[:8]))}{', ...' if frame.shape[1] > 8 else ''}"


def load_table(cfg: DataConfig, path: Optional[str | Path] = None, require_labels: bool = True,
               allow_one_class: bool = False, text_columns: Sequence[str] = ()) -> LabelledTable:
    """Read ``path`` (default ``cfg.data_path``), drop configured columns, split off the label.

    Without a label column and ``require_labels=False`` the labels are all -1. ``text_columns``:
    see :func:`read_csv`.
    """
    path = Path(path or cfg.data_path)
    frame = read_frame(path, cfg.column_names, text_columns)
    return labelled(frame, cfg, path, require_labels=require_labels, allow_one_class=allow_one_class,
                    text_columns=text_columns)


def labelled(frame: pd.DataFrame, cfg: DataConfig, path: Any, *, require_labels: bool = True,
             allow_one_class: bool = False, text_columns: Sequence[str] = (), bad_cells: bool = True) -> LabelledTable:
    """The rows of ``frame`` (read from ``path``) as features and labels: configured columns dropped, labels and
    attack types read, the NaN policy applied. ``bad_cells``: text columns that hold numbers but in a few cells
    become number columns (:func:`numbers_with_bad_cells`; not for one block of a file among others, whose
    columns must keep the types the other blocks have)."""
    missing_drop = [c for c in cfg.drop_columns if c not in frame.columns]
    if missing_drop:
        raise UserError(f"data.drop_columns names columns not in {path}: {', '.join(missing_drop)}"
                        f"{near_miss(missing_drop[0], frame.columns, 'that entry of data.drop_columns')}")
    frame = frame.drop(columns=cfg.drop_columns)
    if cfg.label_column not in frame.columns:
        if require_labels:
            raise UserError(f"label column '{cfg.label_column}' not found in {path} (columns: {_columns_list(frame)})"
                            f"{near_miss(cfg.label_column, frame.columns, 'data.label_column')}")
        if bad_cells:
            frame = numbers_with_bad_cells(frame, path, keep_text=text_columns)
        return LabelledTable(frame, np.full(len(frame), -1, dtype=np.int64), str(path))
    labels = encode_labels(frame[cfg.label_column], cfg.label_column, cfg.normal_value, allow_one_class)
    types = attack_types(frame, labels, cfg, path, required=not allow_one_class)
    features = frame.drop(columns=list(dict.fromkeys([cfg.label_column, *(
        [cfg.type_column] if types is not None else [])])))
    if features.shape[1] == 0:
        raise UserError(f"{path}: no feature columns besides the label")
    if bad_cells:
        features = numbers_with_bad_cells(features, path, keep_text=text_columns)
    if types is not None:
        features["__type__"] = types  # dropped with the rows the NaN policy drops, then taken off again
    features, labels = apply_nan_policy(features, labels, cfg.nan_policy, path)
    if types is not None:
        types = features.pop("__type__").to_numpy(dtype=object)
    return LabelledTable(features.reset_index(drop=True), labels, str(path), types)


def attack_types(frame: pd.DataFrame, labels: np.ndarray, cfg: DataConfig, path: Path,
                 required: bool = True) -> Optional[np.ndarray]:
    """Each row's attack type (``data.type_column``) as stripped text, or None without a type column.

    A training file (``required``) must hold the column, and its anomalous rows more than one type; an
    evaluation file may lack the column (then no per-type results). Families must cover every attack type of a
    training file."""
    column = cfg.type_column
    if column is None:
        return None
    if column not in frame.columns:
        if not required:
            return None
        raise UserError(f"data.type_column '{column}' not found in {path} (columns: {_columns_list(frame)})"
                        f"{near_miss(column, frame.columns, 'data.type_column')}")
    raw = frame[column]
    text = raw.astype(str).str.strip()
    blank = (raw.isna() | (text == "")).to_numpy()
    if (blank & (labels == 1)).any():  # a normal row's type is never used: it may be blank (UNSW-NB15 style)
        raise UserError(f"data.type_column '{column}' is empty in {int((blank & (labels == 1)).sum())} anomalous "
                        f"rows of {path}")
    types = text.where(~blank, "normal").to_numpy(dtype=object)
    if required:
        check_attack_types(set(types[labels == 1]), set(types), cfg, path)
    return types


def check_attack_types(attack: set, present: set, cfg: DataConfig, path: Any) -> None:
    """A training file's attack types (those of its anomalous rows; ``present``: every type in it) must be more
    than one, and ``data.type_families`` must give each a family."""
    column = cfg.type_column
    attack = sorted(attack)
    if len(attack) < 2:
        only = f" ('{attack[0]}')" if len(attack) else ""
        raise UserError(f"data.type_column '{column}' holds one value for every anomalous row{only}: it names no "
                        f"attack types (it may be a copy of the label); name the column of attack types")
    if cfg.type_families:  # an evaluation file's types without a family are reported apart
        family_of = cfg.family_of
        unmapped = [t for t in attack if t not in family_of]
        if unmapped:
            absent = sorted(t for t in family_of if t not in present)
            hint = f"; it lists {', '.join(absent[:6])}, which are not in the file" if absent else ""
            raise UserError(f"data.type_families gives no family to attack type{'s' if len(unmapped) > 1 else ''} "
                            f"{', '.join(unmapped[:8])} of {path}{hint}")


def apply_nan_policy(features: pd.DataFrame, labels: np.ndarray, policy: str, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Report or drop rows with NaN/inf features; 'median' and 'zero' are imputed by the preprocessor."""
    numeric = features.select_dtypes(include=[np.number])
    bad_numeric = numeric.isna() | np.isinf(numeric.to_numpy(dtype=np.float64, na_value=np.nan))
    bad = features.isna()
    bad[numeric.columns] = bad_numeric
    if not bad.to_numpy().any():
        return features, labels
    if policy == "error":
        counts = bad.sum()
        counts = counts[counts > 0]
        detail = ", ".join(f"'{c}' ({n} rows)" for c, n in counts.items())
        raise UserError(
            f"{path}: NaN or infinite values in {detail}; set data.nan_policy to drop, median or zero"
        )
    if policy == "drop":
        keep = ~bad.any(axis=1).to_numpy()
        if not keep.any():
            raise UserError(f"{path}: every row has a NaN or infinite value (data.nan_policy=drop)")
        return features.loc[keep], labels[keep]
    # median/zero: non-finite numerics become NaN here and are filled with training-fold statistics
    features = features.copy()
    features[numeric.columns] = numeric.where(~bad_numeric)
    return features, labels


def check_columns(expected: list[str], frame: pd.DataFrame, source: Any) -> None:
    """The data's feature columns must be the model's: name every missing and every extra one."""
    have = list(map(str, frame.columns))
    missing = [c for c in expected if c not in have]
    extra = [c for c in have if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"extra {', '.join(extra)}")
        raise UserError(f"{source}: columns do not match the model's schema: {'; '.join(parts)}")
