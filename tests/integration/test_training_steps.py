"""How the toolkit drives Lightning for speed, checked for sameness: several optimizer steps per trainer step
train exactly the same model, loggers still count optimizer steps, and ``last.ckpt`` is a link to
``best.ckpt`` only when both hold the same epoch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import netad.data.datamodule as datamodule
from conftest import fast_config, make_frame
from netad.data.loading import load_table
from netad.models.checkpoint import read_checkpoint
from netad.training.fit import fit_split

EPOCHS = 4


def _fit(tmp_path: Path, steps: int, monkeypatch, **overrides: str):
    monkeypatch.setattr(datamodule, "STEPS_PER_TRAINER_STEP", steps)
    csv_path = tmp_path / "traffic.csv"
    if not csv_path.exists():
        make_frame(n=300, seed=5).to_csv(csv_path, index=False)
    cfg = fast_config(tmp_path / f"steps{steps}", csv_path,
                      **{"training__num_epochs": str(EPOCHS), "training__scheduler": "cosine", **overrides})
    table = load_table(cfg.data)
    rows = np.arange(len(table))
    train, val, held_out = rows[:180], rows[180:240], rows[240:]
    out = tmp_path / f"steps{steps}" / "fold"
    result = fit_split(cfg, table, train, val, out, name="fold", run_name="run", eval_idx=held_out, quiet=True)
    return cfg, result, out


def test_grouped_optimizer_steps_train_the_same_model(tmp_path, monkeypatch):
    # 180 rows in batches of 32: 6 optimizer steps per epoch, run one, four (4 + 2) or all six per trainer step
    runs = {k: _fit(tmp_path, k, monkeypatch) for k in (1, 4, 64)}
    _, one, one_dir = runs[1]
    one_last = read_checkpoint(one_dir / "last.ckpt")
    assert one_last["global_step"] == EPOCHS * 6
    for k in (4, 64):
        _, result, out = runs[k]
        assert result.val_metrics == one.val_metrics and result.eval_scores == one.eval_scores
        assert result.threshold == one.threshold and result.best_epoch == one.best_epoch
        last = read_checkpoint(out / "last.ckpt")
        assert last["global_step"] == one_last["global_step"]
        for key, value in one_last["state_dict"].items():
            assert torch.equal(last["state_dict"][key], value), key
        assert last["lr_schedulers"] == one_last["lr_schedulers"]


def test_loggers_step_in_optimizer_steps(tmp_path, monkeypatch):
    cfg, _, _ = _fit(tmp_path, 64, monkeypatch)
    acc = EventAccumulator(str(Path(cfg.logging.tensorboard_dir) / "run" / "fold"))
    acc.Reload()
    expected = [6 * (epoch + 1) - 1 for epoch in range(EPOCHS)]  # each epoch's last optimizer step, as Lightning logs
    for key in ("train/loss", "train/auroc", "val/loss", "val/f1", "val/threshold"):
        assert [event.step for event in acc.Scalars(key)] == expected, key
    assert [event.value for event in acc.Scalars("epoch")][-1] == EPOCHS - 1
    assert len(acc.Scalars("test/auroc")) == 1


def test_last_checkpoint_is_a_link_only_when_best_is_the_same_epoch(tmp_path, monkeypatch):
    # a loss that keeps falling: the last epoch is also the best, one file under two names
    _, result, out = _fit(tmp_path, 64, monkeypatch, training__learning_rate="0.01")
    assert result.best_epoch == EPOCHS - 1
    assert os.path.samefile(out / "best.ckpt", out / "last.ckpt")
    # weights that barely move keep the validation ranking, so AUROC never improves after the first epoch:
    # last.ckpt is written on its own at every epoch
    still = tmp_path / "still"
    still.mkdir()
    _, result, out = _fit(still, 64, monkeypatch, checkpoint__monitor="val/auroc", training__learning_rate="1e-9")
    assert result.best_epoch == 0
    assert not os.path.samefile(out / "best.ckpt", out / "last.ckpt")
    best, last = read_checkpoint(out / "best.ckpt"), read_checkpoint(out / "last.ckpt")
    assert (best["epoch"], last["epoch"]) == (0, EPOCHS - 1)
    assert last["global_step"] == EPOCHS * 6


def test_resume_from_a_checkpoint_of_the_automatic_optimization_era(tmp_path, monkeypatch):
    """Checkpoints written before training counted steps manually hold the count in the automatic loop's
    progress; a resume carries it over instead of restarting global_step (and the logger steps) at zero."""
    from conftest import Crash, CrashAtEpoch

    monkeypatch.setattr(datamodule, "STEPS_PER_TRAINER_STEP", 64)
    make_frame(n=300, seed=5).to_csv(tmp_path / "traffic.csv", index=False)
    cfg = fast_config(tmp_path, tmp_path / "traffic.csv", training__num_epochs=str(EPOCHS))
    table = load_table(cfg.data)
    rows = np.arange(len(table))
    out = tmp_path / "fold"
    with pytest.raises(Crash):
        fit_split(cfg, table, rows[:180], rows[180:240], out, name="fold", run_name="run", quiet=True,
                  extra_callbacks=[CrashAtEpoch(2)])
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    loops = ckpt["loops"]["fit_loop"]
    manual = loops["epoch_loop.manual_optimization.optim_step_progress"]
    assert manual["total"]["completed"] == 12
    # the layout an older netad wrote: the count in the automatic loop, the manual one empty
    loops["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"] = {
        part: dict(manual[part]) for part in ("total", "current")}
    loops["epoch_loop.manual_optimization.optim_step_progress"] = {
        part: {"ready": 0, "completed": 0} for part in ("total", "current")}
    torch.save(ckpt, out / "old.ckpt")
    fit_split(cfg, table, rows[:180], rows[180:240], out, name="fold", run_name="run", quiet=True,
              resume_from=out / "old.ckpt")
    assert read_checkpoint(out / "last.ckpt")["global_step"] == EPOCHS * 6


def test_plateau_scheduler_steps_once_per_epoch_on_validation_loss(tmp_path, monkeypatch):
    cfg, _, out = _fit(tmp_path, 64, monkeypatch, training__scheduler="plateau")
    state = read_checkpoint(out / "last.ckpt")["lr_schedulers"][0]
    acc = EventAccumulator(str(Path(cfg.logging.tensorboard_dir) / "run" / "fold"))
    acc.Reload()
    val_losses = [event.value for event in acc.Scalars("val/loss")]
    assert state["last_epoch"] == EPOCHS == len(val_losses)
    assert state["best"] == pytest.approx(min(val_losses), rel=1e-6)
