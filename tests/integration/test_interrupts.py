"""Ctrl-C and resume: the restored trainer state (early stopping, optimizer, scheduler) is what an
uninterrupted run would have had, in-process and through the real train.py."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, EarlyStopping

from conftest import ROOT, fast_config
from netad.training.cv import run_cv

# a high learning rate makes validation loss turn up early, so early stopping really stops some folds;
# with cosine annealing the learning rate of every epoch depends on the restored scheduler state
SETTINGS = {"training__num_epochs": "12", "training__learning_rate": "0.03", "training__scheduler": "cosine",
            "training__early_stopping_patience": "2", "cross_validation__train_final_model": "false"}


class Spy(Callback):
    """Per fit: the state at train start and at the start of every epoch."""

    def __init__(self, log: dict, name: str) -> None:
        self.store, self.name = log, name

    def on_train_start(self, trainer, pl_module) -> None:
        self.store.setdefault(self.name, {})["start"] = {
            "epoch": trainer.current_epoch,
            "optimizer_state": len(trainer.optimizers[0].state),
        }

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        stopper = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
        self.store.setdefault(self.name, {}).setdefault("epochs", {})[trainer.current_epoch] = {
            "wait": stopper.wait_count,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
        }


class CtrlC(Callback):
    """A person pressing Ctrl-C when ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def _result(run: Path, name: str) -> dict:
    data = json.loads((run / name / "result.json").read_text())
    data.pop("checkpoint")  # the path differs between the two runs
    return data


def test_ctrl_c_then_resume_restores_early_stopping_optimizer_and_scheduler(tmp_path, csv_path, caplog):
    k = 3
    ref_log: dict = {}
    reference = run_cv(fast_config(tmp_path / "ref", csv_path, **SETTINGS), run_name="r", quiet=True,
                       extra_callbacks=lambda name: [Spy(ref_log, name)])
    ref_run = Path(reference.run_dir)

    # interrupt a later fold at an epoch where early stopping is already counting (wait > 0)
    candidates = [(int(name.split("_")[1]), epoch) for name, log in ref_log.items() if name != "fold_0"
                  for epoch, state in sorted(log["epochs"].items()) if state["wait"] > 0 and epoch > 0]
    assert candidates, f"early stopping never counted in folds 1..{k - 1}: {ref_log}"
    fold, epoch = candidates[0]
    name = f"fold_{fold}"
    assert _result(ref_run, name)["epochs_run"] < 12, "the reference fold should have stopped early"

    cfg = fast_config(tmp_path / "cut", csv_path, **SETTINGS)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):  # not SystemExit: the CLI turns it into "interrupted: ..." and 130
        run_cv(cfg, run_name="r", quiet=True, extra_callbacks=lambda n: [CtrlC(epoch)] if n == name else [])
    assert signal.getsignal(signal.SIGINT) == handler, "Ctrl-C handling left SIGINT ignored"
    run = Path(cfg.checkpoint.save_dir) / "r"
    assert sorted(p.parent.name for p in run.glob("*/result.json")) == [f"fold_{i}" for i in range(fold)]
    last = torch.load(run / name / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == epoch - 1
    stopper_state = next(v for key, v in last["callbacks"].items() if key.startswith("EarlyStopping"))
    assert stopper_state["wait_count"] == ref_log[name]["epochs"][epoch]["wait"] > 0
    finished = {i: (run / f"fold_{i}" / "result.json").stat().st_mtime_ns for i in range(fold)}

    log: dict = {}
    caplog.set_level(logging.INFO, logger="netad")  # the progress lines
    resumed = run_cv(None, resume=run, quiet=True, extra_callbacks=lambda n: [Spy(log, n)])
    messages = caplog.messages
    # finished folds are not trained again, the interrupted one continues where it stopped
    assert sorted(log) == [f"fold_{i}" for i in range(fold, k)]
    assert all((run / f"fold_{i}" / "result.json").stat().st_mtime_ns == t for i, t in finished.items())
    assert any(m == f"fold_{i}: finished earlier, skipped" for i in range(fold) for m in messages)
    assert log[name]["start"]["epoch"] == epoch and log[name]["start"]["optimizer_state"] > 0
    for later in range(fold + 1, k):
        assert log[f"fold_{later}"]["start"] == {"epoch": 0, "optimizer_state": 0}, "a fresh fold got old state"
    # the same learning rate and early-stopping count at every epoch after the resume
    assert log[name]["epochs"] == {e: s for e, s in ref_log[name]["epochs"].items() if e >= epoch}

    for i in range(k):
        got, want = _result(run, f"fold_{i}"), _result(ref_run, f"fold_{i}")
        assert got["epochs_run"] == want["epochs_run"] and got["best_epoch"] == want["best_epoch"]
        assert got["threshold"] == pytest.approx(want["threshold"], abs=1e-6)
        assert got["eval_metrics"] == pytest.approx(want["eval_metrics"], abs=1e-6)
        assert got["eval_scores"] == pytest.approx(want["eval_scores"], abs=1e-6)
    for got, want in zip(resumed.folds, reference.folds):
        assert got == pytest.approx(want, abs=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(run / "oof_predictions.csv"),
                                  pd.read_csv(ref_run / "oof_predictions.csv"), atol=1e-6)


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_in_train_py_exits_with_one_line_and_leaves_a_resumable_fold(tmp_path, cfg, sig, code,
                                                                                        said):
    """A real SIGINT or SIGTERM to the real script: one line on stderr naming the run folder, exit code 130
    or 143, last.ckpt kept."""
    cfg.training.num_epochs = 100_000  # runs until interrupted
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--config", str(config), "--use-cv", "--quiet",
                             "--run-name", "cut"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    last = Path(cfg.checkpoint.save_dir) / "cut" / "fold_0" / "last.ckpt"
    deadline = time.monotonic() + 120
    try:
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), "training never wrote a checkpoint"
        time.sleep(0.5)  # a few epochs more
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, (proc.returncode, err)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]  # the data's
    run = Path(cfg.checkpoint.save_dir) / "cut"
    assert lines == [f"{said}: resume with --resume {run}"], err
    assert last.is_file() and not (last.parent / "result.json").exists()


@pytest.mark.slow  # real processes: runs in `make test-slow` (CI runs both)
def test_kill_9_mid_cv_then_resume_reproduces_the_uninterrupted_run(tmp_path, cfg):
    """SIGKILL leaves no chance to clean up: the atomic files and last.ckpt alone must let --resume finish
    the run with the uninterrupted run's table, baselines and out-of-fold scores."""
    cfg.training.num_epochs = 30
    cfg.cross_validation.permutation_baseline = True
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    script = [sys.executable, str(ROOT / "train.py"), "--config", str(config), "--use-cv", "--quiet"]
    reference = subprocess.run(script + ["--run-name", "whole"], cwd=tmp_path, capture_output=True, text=True,
                               timeout=300)
    assert reference.returncode == 0, reference.stderr
    proc = subprocess.Popen(script + ["--run-name", "killed"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run = Path(cfg.checkpoint.save_dir) / "killed"
    deadline = time.monotonic() + 240
    try:  # killed while fold 1 trains: fold 0 finished, fold 1 half done
        while not (run / "fold_1" / "last.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (run / "fold_1" / "last.ckpt").exists(), "training never reached fold 1"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (run / "cv_results.json").exists()
    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(run), "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    got = json.loads((run / "cv_results.json").read_text())
    want = json.loads((Path(cfg.checkpoint.save_dir) / "whole" / "cv_results.json").read_text())
    def close(a, b) -> bool:
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
        return a == pytest.approx(b, abs=1e-6, nan_ok=True) if isinstance(a, float) else a == b

    for key in ("folds", "summary", "baselines"):
        assert close(got[key], want[key]), key
    assert got["verdict"]["message"] == want["verdict"]["message"]
    pd.testing.assert_frame_equal(pd.read_csv(run / "oof_predictions.csv"),
                                  pd.read_csv(Path(cfg.checkpoint.save_dir) / "whole" / "oof_predictions.csv"),
                                  atol=1e-6)
