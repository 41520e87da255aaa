"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A reader (or a resume after Ctrl-C) never sees half a file, and parallel jobs writing the
same target never share a temporary file.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from netad.errors import os_error_line


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if os_error_line(exc) is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # the file meant, not its temporary name
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: an interrupt during a save keeps the previous file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        with atomic_target(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
