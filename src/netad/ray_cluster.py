"""Ray, the optional engine past one machine (``pip install -e .[ray]``): the connection that ``--engine ray``
uses for CV folds (:mod:`netad.training.ray_engine`) and batch scoring (:mod:`netad.serving.ray_scoring`).

The cluster is the one ``ray.init()`` finds: ``RAY_ADDRESS`` (``host:port`` of a head started with
``ray start --head``), else a cluster already started on this machine, else a new local one with a core per
CPU. An address where nothing listens is said in one line within seconds (``ray.init`` would keep retrying
for minutes). Every node needs this project installed and sees the data and run folders at the same paths.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
from typing import Any

from netad.errors import UserError

INSTALL_HINT = "pip install -e .[ray]"
#: seconds the head's address gets to accept a connection before the command gives up on it
CONNECT_SECONDS = 5.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (scoring needs Ray Data: the [ray] extra installs ray[data])
    except ImportError:
        raise UserError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` of an address (``ray://`` client addresses too); None for ``auto``/``local``."""
    text = address.strip()
    if text in ("", "auto", "local"):
        return None
    text = text.split("://", 1)[-1]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"RAY_ADDRESS={address}: expected host:port of the Ray head (ray start --head prints it)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, seconds: float = CONNECT_SECONDS) -> None:
    """The head at ``address`` accepts a TCP connection within ``seconds``, or a UserError says it does not."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=seconds):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at RAY_ADDRESS={address} ({exc.strerror or exc}): start its "
                        f"head with `ray start --head --port={target[1]}`, or unset RAY_ADDRESS to run on a local "
                        f"cluster of this machine's cores") from None


def connect() -> Any:
    """Ray, connected to its cluster (once per process; a connection made earlier is kept)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    address = os.environ.get("RAY_ADDRESS", "")
    check_reachable(address)
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init installs its own, which exits without a word
    try:
        ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"RAY_ADDRESS={address}" if address else "this machine"
        raise UserError(f"cannot start or reach a Ray cluster at {where}: {str(exc).splitlines()[0]}") from None
    finally:
        if threading.current_thread() is threading.main_thread() and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return ray


def task_error_line(exc: BaseException) -> str:
    """The one line that says why a Ray task failed: its own exception's first line (and that of the error
    behind it, such as pyarrow's parse error behind Ray Data's "Failed to read"), not Ray's wrapper's."""
    chain: list[BaseException] = []
    current: Any = exc
    while isinstance(current, BaseException) and current not in chain and len(chain) < 8:
        chain.append(current)
        current = getattr(current, "cause", None) or current.__cause__
    own = [e for e in chain if not type(e).__module__.startswith("ray.")]

    def first(e: BaseException) -> str:
        lines = [ANSI.sub("", line).strip() for line in str(e).splitlines()]
        line = next((x for x in lines if x and not x.startswith(("Traceback", "File ", "ray::"))), "")
        name = type(e).__name__
        return line if name == "UserError" else f"{name}: {line}" if line else name

    if not own:
        return first(exc)
    text = first(own[0]) + (f" ({first(own[-1])})" if len(own) > 1 else "")
    return text if len(text) <= 400 else text[:397] + "..."


def largest_node(ray: Any) -> dict[str, float]:
    """The resources of the cluster's largest alive node (its CPUs, GPUs)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return {"CPU": max((n.get("CPU", 0) for n in nodes), default=0),
            "GPU": max((n.get("GPU", 0) for n in nodes), default=0)}


def cluster_cpus(ray: Any) -> int:
    """The CPUs the cluster has (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
