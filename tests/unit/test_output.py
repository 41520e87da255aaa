"""netad.serving.output.DirectWriter: the scored file, byte for byte, written past the page cache
where the file system and disk allow, through it where they do not."""

from __future__ import annotations

import errno
import fcntl
import os

import numpy as np
import pyarrow as pa
import pytest

from netad.serving.output import ALIGN, DirectWriter


def pieces(seed: int = 0, n: int = 200) -> list:
    """Writes of every awkward size (empty, one byte, whole blocks, longer than the staging buffer),
    as each kind of buffer the scorer hands over."""
    rng = np.random.default_rng(seed)
    sizes = [0, 1, ALIGN, ALIGN - 1, ALIGN + 1, 5 * ALIGN + 17] + rng.integers(0, 3 * ALIGN, n).tolist()
    out = []
    for i, size in enumerate(sizes):
        raw = rng.integers(0, 256, size, dtype=np.uint8)
        kind = i % 4
        out.append(raw.tobytes() if kind == 0 else bytearray(raw.tobytes()) if kind == 1
                   else pa.py_buffer(raw.tobytes()) if kind == 2 else raw.reshape(-1, 1) if size else raw)
    return out


def expected_bytes(parts: list) -> bytes:
    return b"".join(memoryview(p).cast("B").tobytes() for p in parts)


def is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


@pytest.mark.parametrize("direct", [True, False])
def test_every_byte_arrives_in_order(tmp_path, direct):
    parts = pieces()
    path = tmp_path / "out.bin"
    with DirectWriter(path, stage_bytes=3 * ALIGN, direct=direct) as w:
        assert w.direct is direct and is_direct(w._fd) is direct  # this file system takes O_DIRECT
        for p in parts:
            w.write(p)
    assert w.direct is direct  # a fast disk: direct writes all the way
    data = path.read_bytes()
    assert data == expected_bytes(parts) and len(data) == w.size  # the padding of the last block is cut off


@pytest.mark.parametrize("size", [0, 1, ALIGN, 2 * ALIGN + 5])
def test_small_files_and_block_sized_files(tmp_path, size):
    path = tmp_path / "out.bin"
    with DirectWriter(path) as w:
        w.write(b"x" * size)
    assert path.read_bytes() == b"x" * size


def test_a_file_system_without_o_direct_gets_ordinary_writes(tmp_path, monkeypatch):
    real_open = os.open

    def no_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    parts = pieces(seed=1, n=40)
    with DirectWriter(tmp_path / "out.bin", stage_bytes=2 * ALIGN) as w:
        for p in parts:
            w.write(p)
    assert not w.direct and w.why_buffered == "O_DIRECT refused at open"
    assert (tmp_path / "out.bin").read_bytes() == expected_bytes(parts)


def test_a_direct_write_refused_midway_goes_on_with_ordinary_writes(tmp_path, monkeypatch):
    real_write = os.write
    refused = []

    def refuse_third_direct_write(fd, data):
        if is_direct(fd) and len(refused) < 3:
            refused.append(len(data))
            if len(refused) == 3:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refuse_third_direct_write)
    parts = pieces(seed=2, n=60)
    with DirectWriter(tmp_path / "out.bin", stage_bytes=2 * ALIGN) as w:
        for p in parts:
            w.write(p)
        assert not is_direct(w._fd)
    assert len(refused) == 3 and not w.direct and w.why_buffered == "O_DIRECT write refused"
    assert (tmp_path / "out.bin").read_bytes() == expected_bytes(parts)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("disk_seconds, switches", [(1.0, True), (0.1, False)])
def test_a_disk_slower_than_the_scoring_gets_ordinary_writes(tmp_path, monkeypatch, disk_seconds, switches):
    """Between writes the scorer works 1 s (fake clock); each direct write of a block takes
    ``disk_seconds``. Waiting half the time on the disk is too much; a tenth is fine."""
    clock, real_write = FakeClock(), os.write

    def timed_write(fd, data):
        if is_direct(fd):
            clock.now += disk_seconds
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", timed_write)
    data = bytes(range(256)) * (ALIGN // 256)
    path = tmp_path / "out.bin"
    with DirectWriter(path, stage_bytes=ALIGN, probe_bytes=4 * ALIGN, clock=clock) as w:
        for i in range(12):
            clock.now += 1.0
            w.write(data)
            if i < 3:
                assert w.direct  # still probing the disk
    assert w.direct is not switches
    assert w.why_buffered == ("the disk is slower than the scoring" if switches else "")
    assert path.read_bytes() == data * 12


def test_other_write_errors_are_raised(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    w = DirectWriter(tmp_path / "out.bin", stage_bytes=ALIGN)
    with pytest.raises(OSError) as err:
        w.write(b"x" * ALIGN)
    assert err.value.errno == errno.ENOSPC
    w.close(flush=False)


def test_an_error_inside_the_block_closes_without_writing(tmp_path):
    path = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with DirectWriter(path) as w:
            w.write(b"staged, never written")
            raise RuntimeError("scoring failed")
    assert w._fd == -1 and path.read_bytes() == b""


def test_no_staging_memory_no_file(tmp_path, monkeypatch):
    """The staging buffer comes first: when it cannot be had, no file is created and no descriptor leaks."""
    import mmap

    def no_memory(*args, **kwargs):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", no_memory)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        DirectWriter(tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists() and len(os.listdir("/proc/self/fd")) == before
