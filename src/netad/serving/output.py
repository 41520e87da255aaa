"""The scored file's writer: output goes straight to the disk (``O_DIRECT``), past the page cache,
where the disk keeps up; through the page cache (ordinary writes) where it does not.

Why: an ordinary write copies every byte into page-cache pages the kernel first has to find. On a
virtual machine that hands freed memory back to its host (free page reporting, as on this project's
machines) that is slow: with ordinary writes of the 1M-row file's 167 MB of scores, a run spent
0.21-0.51 s in the kernel there (median of 12: 0.32 s), with direct writes 0.07-0.12 s. A direct
write waits for the disk instead, so the writer watches how long it waits: once the disk takes more
than ``max_wait_share`` of the time since the file was opened (a disk slower than the scoring), it
goes on with ordinary writes, which the kernel writes back in the background.
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from pathlib import Path
from typing import Any, Callable

ALIGN = 4096  # direct writes: offset, length and memory are multiples of this (the page size suits common disks)


class DirectWriter:
    """A new binary file, written through a page-aligned staging buffer of ``stage_bytes``.

    ``direct``: try ``O_DIRECT`` (Linux). It is dropped for ordinary writes where the file system
    refuses it (at open, or with EINVAL on a write), and once direct writes have taken more than
    ``max_wait_share`` of the time since opening, counted after the first ``probe_bytes``."""

    def __init__(self, path: str | Path, *, stage_bytes: int = 8 << 20, direct: bool = True,
                 max_wait_share: float = 0.25, probe_bytes: int = 32 << 20,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._stage = mmap.mmap(-1, max(ALIGN, stage_bytes - stage_bytes % ALIGN))  # page-aligned
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        o_direct = getattr(os, "O_DIRECT", 0)
        self.direct = False
        self._fd = -1
        try:
            if direct and o_direct:
                try:
                    self._fd = os.open(path, flags | o_direct, 0o666)
                    self.direct = True
                except OSError:  # a file system without O_DIRECT (EINVAL): ordinary writes
                    pass
            if self._fd < 0:
                self._fd = os.open(path, flags, 0o666)
        except BaseException:
            self._stage.close()
            raise
        self._pos = 0  # bytes waiting in the staging buffer
        self.size = 0  # bytes written (handed to write) so far
        self.why_buffered = "" if self.direct else ("not asked" if not direct else "O_DIRECT refused at open")
        self._clock, self._opened = clock, clock()
        self._max_wait_share, self._probe_bytes = max_wait_share, probe_bytes
        self._direct_bytes, self._direct_seconds = 0, 0.0

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        stage, cap = self._stage, len(self._stage)
        while len(view):
            take = min(len(view), cap - self._pos)
            stage[self._pos: self._pos + take] = view[:take]
            self._pos += take
            view = view[take:]
            if self._pos == cap:
                self._flush()

    def _flush(self, final: bool = False) -> None:
        """Write the staging buffer: full, so whole blocks, or (``final``) padded to a whole block,
        which close() cuts off the file again."""
        n = self._pos
        if final and n % ALIGN:
            pad = ALIGN - n % ALIGN
            self._stage[n: n + pad] = bytes(pad)
            n += pad
        if n:
            self._write_all(memoryview(self._stage)[:n])
        self._pos = 0

    def _write_all(self, view: memoryview) -> None:
        while len(view):
            start = self._clock()
            try:
                done = os.write(self._fd, view)
            except OSError as exc:
                if not self.direct or exc.errno != errno.EINVAL:
                    raise
                self._buffered("O_DIRECT write refused")
                continue
            if self.direct:
                self._direct_seconds += self._clock() - start
                self._direct_bytes += done
                if (self._direct_bytes >= self._probe_bytes
                        and self._direct_seconds > self._max_wait_share * (self._clock() - self._opened)):
                    self._buffered("the disk is slower than the scoring")
            view = view[done:]

    def _buffered(self, why: str) -> None:
        import fcntl  # only reached where O_DIRECT exists (Linux)

        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        self.direct, self.why_buffered = False, why

    def close(self, flush: bool = True) -> None:
        """Write what is staged and close; ``flush=False`` (after an error) only closes."""
        if self._fd < 0:
            return
        try:
            if flush:
                self._flush(final=True)
                os.ftruncate(self._fd, self.size)
        finally:
            os.close(self._fd)
            self._fd = -1
            try:
                self._stage.close()
            except BufferError:  # a view of it lives on in an error's traceback: freed with it
                pass

    def __enter__(self) -> "DirectWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(flush=exc_type is None)
