"""How many CPU threads the math gets: ``trainer.num_threads`` (``auto`` = :data:`AUTO_THREADS`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

#: what ``num_threads: auto`` means: one thread. This project's networks are small (a few thousand to a few
#: hundred thousand weights, batches of 64-4096 rows): a matrix product per layer and batch takes microseconds,
#: less than waking a second thread; on a machine that is busy with anything else, threads that wait for a
#: core make every step wait for the slowest (benchmarks/busy_speed.py, README "Speed").
AUTO_THREADS = 1


def resolve_threads(setting: Any) -> int:
    """The thread count ``trainer.num_threads`` stands for (``auto``: :data:`AUTO_THREADS`)."""
    return AUTO_THREADS if setting in (None, "auto") else int(setting)


@contextmanager
def limit_threads(setting: Any) -> Iterator[int]:
    """Hold PyTorch's intra-op threads and the BLAS / OpenMP pools of numpy, scikit-learn and pyod
    (threadpoolctl) to ``trainer.num_threads`` inside the block; the previous counts come back after it."""
    from threadpoolctl import threadpool_limits

    n, before = resolve_threads(setting), torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(before)
