"""Where records come from: one file, a folder of files or a glob, each file CSV (compressed too) or Parquet.

A Parquet file is known by its first bytes (``PAR1``), whatever its name. In a folder every file counts but
those whose names start with ``.`` or ``_`` (``_SUCCESS``, ``.crc`` files that Spark and Hadoop leave beside
their output). The files of one source must share their columns; the error names the first file that does not.
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Optional, Sequence, TypeVar

from netad.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET_MAGIC = b"PAR1"
T = TypeVar("T")
_GLOB_CHARS = frozenset("*?[")


def is_pattern(spec: str | Path) -> bool:
    return any(c in _GLOB_CHARS for c in str(spec))


def data_files(spec: str | Path, what: str = "data") -> list[Path]:
    """The files ``spec`` names, in name order: the file itself, the files of a folder, or a glob's matches."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
        if not files:
            raise UserError(f"{what} folder {path} holds no files")
        return files
    if is_pattern(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                       if os.path.isfile(p) and not Path(p).name.startswith((".", "_")))
        if not files:
            raise UserError(f"{what} pattern {text} matches no files")
        return files
    raise UserError(f"{what} file not found: {path}")


def exists(spec: str | Path) -> bool:
    """``spec`` names at least one file."""
    try:
        return bool(data_files(spec))
    except UserError:
        return False


def is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == PARQUET_MAGIC


def file_digest(path: str | Path) -> str:
    """sha256 of a file: which data a run, its splits and its checkpoints were made from."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_digest(spec: str | Path) -> str:
    """sha256 of what ``spec`` names: one file's own digest; for several files, the digest of each file's
    name (relative to the folder they share) and digest, so renaming, adding or changing a file changes it."""
    files = data_files(spec)
    if len(files) == 1 and Path(spec).is_file():
        return file_digest(files[0])
    root = os.path.commonpath([str(f.parent) for f in files])
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{os.path.relpath(f, root)}\t{file_digest(f)}\n".encode())
    return digest.hexdigest()


def schema_mismatch(path: Path, columns: Sequence[str], first: Path, expected: Sequence[str]) -> Optional[str]:
    """One line naming how ``path``'s columns differ from ``first``'s, or None when they are the same set."""
    have, want = list(map(str, columns)), list(map(str, expected))
    missing = [c for c in want if c not in have]
    extra = [c for c in have if c not in want]
    if not missing and not extra:
        return None
    parts = ([f"lacks {', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}"] if missing else []) + \
            ([f"has {', '.join(extra[:8])}{', ...' if len(extra) > 8 else ''} besides"] if extra else [])
    return f"{path}: its columns differ from those of {first}: it {' and '.join(parts)}"


def file_columns(path: Path, column_names: Optional[Sequence[str]] = None) -> list[str]:
    """One file's columns, without reading its records: a Parquet file's schema, a CSV file's header (a compressed
    one too), or ``column_names`` (``data.column_names``) for CSV files without a header."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if path.stat().st_size == 0:
        raise UserError(f"input file is empty: {path}")
    if is_parquet(path):
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    if column_names:
        return list(column_names)
    small = pacsv.ReadOptions(block_size=1 << 20)  # the header: one small block
    return read_csv_with(path, lambda reader: list(pacsv.open_csv(reader, read_options=small).schema.names))


def read_csv_with(path: Path, how: Callable[[BinaryIO], T]) -> T:
    """``how(reader)`` on a CSV file's bytes (decompressed); a file pyarrow cannot parse, or a damaged compressed
    one, is one line."""
    import pyarrow as pa

    from netad.data.compression import decompressing, open_binary

    reader, raw, kind = open_binary(path)
    try:
        with decompressing(path, kind):
            return how(reader)
    except (pa.ArrowInvalid, StopIteration) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "no records"
        raise UserError(f"{path}: not a readable CSV file ({first})") from None
    finally:
        reader.close()
        raw.close()


def check_named_columns(path: Path, columns: Sequence[str], column_names: Optional[Sequence[str]]) -> None:
    """``data.column_names`` (the columns of CSV files without a header), when set, must be a Parquet file's columns."""
    if column_names:
        problem = schema_mismatch(path, columns, Path("data.column_names"), column_names)
        if problem:
            raise UserError(problem)


def source_name(spec: str | Path) -> str:
    """A short name for report folders: a file's stem, a folder's name, a glob's last folder without a wildcard."""
    text = str(spec)
    if is_pattern(text):
        plain = [part for part in Path(text).parts if not is_pattern(part)]
        return Path(plain[-1]).name if plain else "data"
    path = Path(text)
    return path.name if path.is_dir() else path.stem


def with_text_columns(table: "pa.Table", columns: Sequence[str], text: Sequence[str]) -> "pa.Table":
    """``table``'s ``columns``, those in ``text`` as text: a Parquet boolean as ``true``/``false``, an integer
    category as its digits (what a model that learned them from CSV text knows); dictionary columns decoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for name in columns:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, column.type.value_type)
        if name in text and not pa.types.is_string(column.type):
            column = pc.cast(column, pa.string())
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=list(columns))
