"""Shared, seeded fixtures: small labelled CSVs written by the tests, and a fast config."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]

# no test may reach the network: W&B stays offline and quiet
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)

# the Hub is a local server (tests/hub_server.py): huggingface_hub reads these at import, so set them now
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HUB_PORT = _free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="netad-test-hf-home-")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
for _var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def hub():
    """The local Hub-compatible server at HF_ENDPOINT, for the whole session."""
    from hub_server import FakeHub

    server = FakeHub(port=HUB_PORT).start()
    yield server
    server.stop()


# after the environment above: nothing may import huggingface_hub before it is set
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from netad.config import Config, load_config  # noqa: E402


def make_frame(n: int = 300, anomaly_rate: float = 0.2, signal: float = 2.0, seed: int = 0) -> pd.DataFrame:
    """Mixed-kind traffic-like rows: numerics (one carries signal), a heavy-tailed count,
    a boolean column, a string category, a constant column and a 0/1 label."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < anomaly_rate).astype(int)
    y[:4] = [0, 1, 0, 1]  # both classes, whatever the seed
    return pd.DataFrame(
        {
            "packet_size": rng.normal(0, 1, n) + signal * y,
            "inter_arrival_time": rng.normal(5, 2, n),
            "bytes": rng.lognormal(3, 2, n).round(),
            "is_tcp": rng.random(n) < 0.5,
            "protocol": rng.choice(["tcp", "udp", "icmp"], n),
            "constant": 0.0,
            "label": y.astype(float),
        }
    )


TYPES = ["dos_a", "dos_b", "probe_a", "probe_b", "r2l_a", "r2l_b", "u2r_a"]


def typed_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """make_frame's rows with an attack-type column: 'normal' for normal rows, one of TYPES for anomalies."""
    frame = make_frame(n=n, anomaly_rate=0.4, seed=seed)
    rng = np.random.default_rng(seed + 1)
    attack = frame["label"] == 1
    frame["attack_cat"] = np.where(attack, rng.choice(TYPES, n), "normal")
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def csv_path(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "traffic.csv"
    frame.to_csv(path, index=False)
    return path


def fast_config(tmp_path: Path, data_path: Path, **overrides: str) -> Config:
    """A config that trains in about a second per fold, everything written under tmp_path."""
    sets = [
        f"data.data_path={data_path}",
        f"checkpoint.save_dir={tmp_path / 'checkpoints'}",
        f"logging.tensorboard_dir={tmp_path / 'tb'}",
        f"logging.wandb_dir={tmp_path / 'wandb'}",
        "logging.use_wandb=false",
        "training.num_epochs=3",
        "training.batch_size=32",
        "training.early_stopping_patience=null",
        "model.hidden_dims=[16, 8]",
        "cross_validation.n_splits=3",
        "cross_validation.permutation_baseline=false",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "checkpoint.last_every_seconds=0",  # last.ckpt after every epoch: tests interrupt at a chosen epoch
    ]
    sets += [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()]
    return load_config(None, sets)


@pytest.fixture
def cfg(tmp_path: Path, csv_path: Path) -> Config:
    return fast_config(tmp_path, csv_path)


class Crash(RuntimeError):
    """A simulated failure in the middle of training."""


class CrashAtEpoch(Callback):
    """Simulates a killed job: raises when the given epoch starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Crash(f"simulated crash at epoch {self.epoch}")


def tiny_model(root: Path, seed: int, run_name: str) -> Path:
    """A classifier trained in about a second on a seeded fixture CSV under ``root``; its best_model.ckpt."""
    from netad.training.cv import run_single

    csv_path = root / "traffic.csv"
    make_frame(n=300, seed=seed).to_csv(csv_path, index=False)
    run_single(fast_config(root, csv_path), run_name=run_name, quiet=True)
    return root / "checkpoints" / "best_model.ckpt"


BROWSER_HINT = ("headless Chromium tests need Debian's chromium and chromium-driver "
                "(sudo apt-get install chromium chromium-driver)")


def find_browser(env=os.environ, which=None) -> tuple[str, str]:
    """(chromium, chromedriver). Missing: the test is skipped with how to install them, or fails where
    NETAD_REQUIRE_BROWSER=1 (CI, whose .ci/run installs them)."""
    import shutil

    which = which or shutil.which
    chromium, driver = which("chromium") or which("chromium-browser"), which("chromedriver")
    if chromium and driver:
        return chromium, driver
    if env.get("NETAD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{BROWSER_HINT}; NETAD_REQUIRE_BROWSER=1 makes their absence a failure")
    pytest.skip(BROWSER_HINT)


@contextmanager
def netad_server(model: Path, *args: str, env: Optional[dict] = None) -> Iterator[str]:
    """``python -m netad serve`` on a free 127.0.0.1 port; yields its base URL and stops it afterwards."""
    port = _free_port()
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would stall the server
    proc = subprocess.Popen([sys.executable, "-m", "netad", "serve", "--model", str(model), "--port", str(port),
                             *args], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        started = False
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    started = True
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        if not started:
            log.seek(0)
            pytest.fail("server did not start: " + log.read()[-2000:])
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
