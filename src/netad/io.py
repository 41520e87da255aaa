"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A reader (or a resume after Ctrl-C) never sees half a file, and parallel jobs writing the
same target never share a temporary file. Plain Python: the scoring path uses it too.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from netad.errors import os_error_line


def _new_file_beside(path: Path) -> Path:
    """A new, empty file of a name no other run uses (O_EXCL: never an existing file or a planted link),
    with the permissions any new file gets (``mkstemp``'s would be 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path``, on any error it is removed.
    An environment error (a full disk, a forbidden folder) about the temporary file names ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        about_tmp = exc.filename in (None, str(tmp)) or exc.filename2 == str(tmp)
        if os_error_line(exc) is None or not about_tmp:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # the file meant, not its temporary name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text)
