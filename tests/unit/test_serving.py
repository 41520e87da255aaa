"""Small pieces of the batch scorer: the score text, the block size and the number of threads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from netad.serving.batch import (_MAX_BLOCK_BYTES, _MIN_BLOCK_BYTES, SCORE_DECIMALS, _inside_quotes, _record_ends,
                                 _workers, block_bytes, score_text)


def test_score_text_is_printf_fixed_point():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.random(50_000), [0.0, 1.0, 0.5, 1e-9, 0.9999999999, -0.1, 1.2]]).astype(np.float32)
    flagged = (scores >= 0.5).astype(np.uint8)
    text = score_text(scores, flagged).view(f"S{SCORE_DECIMALS + 5}").ravel()
    expected = [f",{min(max(float(s), 0.0), 1.0):.{SCORE_DECIMALS}f},{f}".encode() for s, f in zip(scores, flagged)]
    assert text.tolist() == expected


def test_block_bytes_gives_each_thread_two_blocks_of_a_small_file():
    assert block_bytes(10 << 30, 2) == _MAX_BLOCK_BYTES  # a large file: full blocks
    assert block_bytes(4 << 20, 2) == 1 << 20  # 4 MB over 2 threads: 4 blocks
    assert block_bytes(1000, 8) == _MIN_BLOCK_BYTES  # tiny: never below the floor


def test_scoring_threads_follow_affinity_and_a_container_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    cpu_max = tmp_path / "cpu.max"
    assert _workers(cpu_max) == 6  # no cgroup file: the affinity
    cpu_max.write_text("max 100000\n")
    assert _workers(cpu_max) == 6  # no quota
    cpu_max.write_text("200000 100000\n")
    assert _workers(cpu_max) == 2  # two CPUs' worth
    cpu_max.write_text("50000 100000\n")
    assert _workers(cpu_max) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    cpu_max.write_text("max 100000\n")
    assert _workers(cpu_max) == 8  # capped


def ends_of(*records: bytes) -> tuple[list[int], list[int]]:
    """The record ends found in the records joined, and the true ones."""
    text = b"".join(records)
    return _record_ends(np.frombuffer(text, dtype=np.uint8), b'"' in text).tolist(), np.cumsum(
        [len(r) for r in records]).tolist()


def test_record_ends_skip_line_breaks_inside_quoted_fields():
    found, true = ends_of(b"a,b\n", b"1,2\r\n")
    assert found == true
    found, true = ends_of(b'1,"x\ny",3\n', b"4,5,6\n")  # a break inside quotes ends no record
    assert found == true
    found, true = ends_of(b'1,"say ""hi""\n!",3\n', b'"\n",1\n', b'"",2\n')  # "" inside quotes; quoted first fields
    assert found == true
    found, true = ends_of(b'1,5"\n', b'2,"a\n')  # a quote inside a plain field is a character
    assert found == true[:1]  # and the last record's quote is never closed: it has no end yet
    found, true = ends_of(b'1,12" monitor\n', b'2,a"b\n')  # only quotes within plain fields
    assert found == true
    found, true = ends_of(b'1,"a\n"x,5"\n', b'2,3\n')  # text after a closing quote, then a plain quote
    assert found == true


def test_record_ends_match_pythons_csv_writer():
    """Random records with commas, quotes and line breaks in fields, written by the csv module: every
    record's end is found, and no other."""
    import csv
    import io

    rng = np.random.default_rng(0)
    pieces = ["a", "12", ",", '"', "\n", "\r\n", " ", '""', "x,y"]
    records = []
    for _ in range(300):
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(
            ["".join(rng.choice(pieces, size=rng.integers(0, 4))) for _ in range(rng.integers(1, 5))])
        records.append(out.getvalue().encode())
    assert sum(b'"' in r and b"\n" in r[:-1] for r in records) > 50  # many records span lines
    found, true = ends_of(*records)
    assert found == true
    data = np.frombuffer(b"".join(records), dtype=np.uint8)  # the quote walk agrees with the parity shortcut
    breaks, quotes = np.flatnonzero(data == 10), np.flatnonzero(data == 34)
    assert (_inside_quotes(data, quotes, breaks) == (np.searchsorted(quotes, breaks) % 2 == 1)).all()


_MALLINFO = """
import ctypes, sys
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "keep":
    from netad.serving.batch import keep_freed_memory
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
block = libc.malloc(20 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(ctypes.c_void_p(block))
"""


def test_keep_freed_memory_serves_blocks_from_mallocs_heap():
    """glibc maps a 20 MB allocation on its own (and unmaps it when freed) by default; after
    keep_freed_memory it comes from the heap, where the next block reuses it."""
    mapped = {mode: int(subprocess.run([sys.executable, "-c", _MALLINFO, mode], capture_output=True, text=True,
                                       check=True, timeout=120).stdout) for mode in ("default", "keep")}
    assert mapped["default"] >= 20 << 20
    assert mapped["keep"] == 0


def test_keep_freed_memory_changes_nothing_without_glibc(monkeypatch):
    import platform

    from netad.serving.batch import keep_freed_memory

    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("", ""))
    assert keep_freed_memory() is False


def run_guard(app, chunks, limit, headers=()):
    """One POST with ``chunks`` as its streamed body through ``_Guard(app)``: (messages sent, chunks pulled)."""
    import asyncio

    from netad.serving.api import _Guard

    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": list(headers)}
    asyncio.run(_Guard(app, None, limit)(scope, receive, send))
    return sent, pulled


async def echo(scope, receive, send):
    """A stub app: reads the whole body (until the last chunk or a disconnect) and sends it back."""
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        body, more = body + message["body"], message["more_body"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_guard_passes_a_body_within_the_limit_untouched():
    sent, pulled = run_guard(echo, [b"a" * 400, b"b" * 400, b"c" * 200], limit=1000)  # exactly the limit
    assert [m.get("status") for m in sent] == [200, None] and sent[1]["body"] == b"a" * 400 + b"b" * 400 + b"c" * 200
    assert pulled == 3


def test_guard_cuts_a_streamed_body_at_the_limit_and_answers_413_alone():
    sent, pulled = run_guard(echo, [b"x" * 400] * 100, limit=1000)
    assert pulled == 3  # the chunk that crossed the limit is the last one read
    assert [m.get("status") for m in sent] == [413, None]  # the app's failure on the cut body sends nothing
    assert (b"connection", b"close") in sent[0]["headers"]
    assert b'"limit_bytes":1000' in sent[1]["body"]


def test_guard_refuses_a_declared_length_before_reading_and_lets_other_errors_through():
    import pytest

    sent, pulled = run_guard(echo, [b"x" * 10], limit=5, headers=[(b"content-length", b"10")])
    assert pulled == 0 and sent[0]["status"] == 413

    async def broken(scope, receive, send):
        raise ValueError("a bug, not a cut body")

    with pytest.raises(ValueError, match="a bug"):
        run_guard(broken, [b"x"], limit=5)


def test_lone_surrogates_are_found_at_any_depth_without_recursion():
    from netad.serving.api import _surrogate_path

    deep = "\ud800"
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    assert _surrogate_path(deep) == [0] * 5000
    assert _surrogate_path([{"a": 1, "b": ["ok", {"c": "x\udc00"}]}]) == [0, "b", 1, "c"]
    assert _surrogate_path({"ok": "é", "k\ud800": 1}) == ["k\ud800"]
    assert _surrogate_path([{"a": "fine ünïcode ✓", "b": [1.5, None, True]}]) is None
