"""Compressed inputs: gzip, bzip2, xz and zstd files, known by their first bytes or, failing that, by name.

Flow logs usually arrive compressed. Every command that reads a CSV reads these as if they were
plain (pandas for whole files, :func:`open_binary` for the block reader of batch scoring).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from netad.errors import UserError

#: leading bytes of each format, as pandas names it
MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
#: archives that hold several files: refused with a hint rather than read as garbage
ARCHIVES = ((b"PK\x03\x04", "zip"), (b"7z\xbc\xaf\x27\x1c", "7z"))


def compression_of(path: str | Path) -> Optional[str]:
    """'gzip', 'bz2', 'xz', 'zstd' or None (plain text), from the file's first bytes, else its suffix."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(8)
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    for magic, name in ARCHIVES:
        if head.startswith(magic):
            raise UserError(f"{path}: is a {name} archive; extract the CSV from it first "
                            f"(gzip, bzip2, xz and zstd files are read as they are)")
    return None if head else SUFFIXES.get(path.suffix.lower())


def open_binary(path: str | Path) -> tuple[BinaryIO, BinaryIO, Optional[str]]:
    """``(reader, raw, kind)``: the file's decompressed bytes, the file itself (its position tells progress)
    and how it is compressed (None: plain)."""
    path = Path(path)
    kind = compression_of(path)
    raw = path.open("rb")
    try:
        if kind is None:
            return raw, raw, kind
        if kind == "gzip":
            return gzip.GzipFile(fileobj=raw, mode="rb"), raw, kind
        if kind == "bz2":
            return bz2.BZ2File(raw, mode="rb"), raw, kind
        if kind == "xz":
            return lzma.LZMAFile(raw, mode="rb"), raw, kind
        try:
            import zstandard
        except ImportError:
            raise UserError(f"{path}: is zstd-compressed; reading it needs the zstandard package "
                            f"(pip install zstandard)") from None
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader), raw, kind
    except BaseException:
        raw.close()
        raise


@contextmanager
def decompressing(path: str | Path, kind: Optional[str]) -> Iterator[None]:
    """Reading a compressed file (``kind``, from :func:`compression_of`): a damaged or truncated one is one
    line, not the decompressor's traceback. Plain files (``kind`` None) pass every error through."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, lzma.LZMAError, zlib.error, *_zstd_errors()) as exc:
        if kind is None:
            raise
        raise UserError(f"{path}: cannot be decompressed as {kind} ({str(exc) or type(exc).__name__})") from None
    except OSError as exc:  # bz2 reports a damaged stream as an OSError without an errno
        if kind is None or exc.errno is not None:
            raise
        raise UserError(f"{path}: cannot be decompressed as {kind} ({exc})") from None


def _zstd_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)
