"""Small pieces of the batch scorer: the score text, the block size and the number of threads."""

from __future__ import annotations

import os

import numpy as np

from netad.serving.batch import _MAX_BLOCK_BYTES, _MIN_BLOCK_BYTES, SCORE_DECIMALS, scoring_threads, block_bytes, score_text


def test_score_text_is_printf_fixed_point():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.random(50_000), [0.0, 1.0, 0.5, 1e-9, 0.9999999999, -0.1, 1.2]]).astype(np.float32)
    expected = [f"{min(max(float(s), 0.0), 1.0):.{SCORE_DECIMALS}f}" for s in scores]
    assert score_text(scores).to_pylist() == expected


def test_block_bytes_gives_each_thread_two_blocks_of_a_small_file():
    assert block_bytes(10 << 30, 2) == _MAX_BLOCK_BYTES  # a large file: full blocks
    assert block_bytes(8 << 20, 2) == 2 << 20  # 8 MB over 2 threads: 4 blocks
    assert block_bytes(1000, 8) == _MIN_BLOCK_BYTES  # tiny: never below the floor


def test_scoring_threads_follow_affinity_and_a_container_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)))
    cpu_max = tmp_path / "cpu.max"
    assert scoring_threads(cpu_max) == 6  # no cgroup file: the affinity
    cpu_max.write_text("max 100000\n")
    assert scoring_threads(cpu_max) == 6  # no quota
    cpu_max.write_text("200000 100000\n")
    assert scoring_threads(cpu_max) == 2  # two CPUs' worth
    cpu_max.write_text("50000 100000\n")
    assert scoring_threads(cpu_max) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    cpu_max.write_text("max 100000\n")
    assert scoring_threads(cpu_max) == 8  # capped


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
