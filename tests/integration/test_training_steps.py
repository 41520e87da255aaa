"""How the toolkit drives Lightning for speed, checked for sameness: several optimizer steps per trainer step
train exactly the same model, loggers still count optimizer steps, ``last.ckpt`` holds the latest epoch
and ``best.ckpt`` the best one (weights only), ``last.ckpt`` waits for its interval but never misses the last
epoch, and the batches come through a real DataLoader (no warning to silence)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import netad.data.datamodule as datamodule
from conftest import fast_config, make_frame
from netad.data.loading import load_table
from netad.errors import UserError
from netad.inference import NetadPredictor
from netad.models.checkpoint import read_checkpoint
from netad.models.classifier import classifier_from_checkpoint
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


def test_last_checkpoint_holds_the_latest_epoch_and_best_the_best(tmp_path, monkeypatch):
    # a loss that keeps falling: the last epoch is also the best, the same state in two files
    _, result, out = _fit(tmp_path, 64, monkeypatch, training__learning_rate="0.01")
    assert result.best_epoch == EPOCHS - 1
    best, last = read_checkpoint(out / "best.ckpt"), read_checkpoint(out / "last.ckpt")
    assert (best["epoch"], last["epoch"]) == (EPOCHS - 1, EPOCHS - 1)
    for key, value in best["state_dict"].items():
        assert torch.equal(last["state_dict"][key], value), key
    # weights that barely move keep the validation ranking, so AUROC never improves after the first epoch:
    # last.ckpt moves on at every epoch, best.ckpt stays
    still = tmp_path / "still"
    still.mkdir()
    _, result, out = _fit(still, 64, monkeypatch, checkpoint__monitor="val/auroc", training__learning_rate="1e-9")
    assert result.best_epoch == 0
    best, last = read_checkpoint(out / "best.ckpt"), read_checkpoint(out / "last.ckpt")
    assert (best["epoch"], last["epoch"]) == (0, EPOCHS - 1)
    assert last["global_step"] == EPOCHS * 6


def test_batches_come_through_a_dataloader_without_warnings(tmp_path, monkeypatch):
    """Lightning sees a torch DataLoader (no "isn't a DataLoader" warning to silence), and the module moves
    batches with Lightning's own transfer hook."""
    from torch.utils.data import DataLoader

    from netad.data.datamodule import TensorBatchLoader

    x, y = torch.zeros(10, 2), torch.zeros(10)
    assert isinstance(TensorBatchLoader(x, y, 4, shuffle=True), DataLoader)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # past the package's own filters
        _fit(tmp_path, 4, monkeypatch)
    said = [str(w.message) for w in caught]
    for text in ("torch.utils.data.DataLoader", "transfer_batch_to_device", "DistributedSampler"):
        assert not [m for m in said if text in m], text


def test_a_checkpoint_of_the_automatic_optimization_era_scores_but_does_not_resume(tmp_path, monkeypatch):
    """Checkpoints written before training counted steps manually hold the count in the automatic loop's
    progress: a resume would restart global_step (and the logger steps) at zero, so it is refused in one line;
    the model in it still scores."""
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
    assert manual["total"]["completed"] == ckpt["global_step"] == 12
    # the layout an older netad wrote: the count in the automatic loop, the manual one empty
    loops["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"] = {
        part: dict(manual[part]) for part in ("total", "current")}
    loops["epoch_loop.manual_optimization.optim_step_progress"] = {
        part: {"ready": 0, "completed": 0} for part in ("total", "current")}
    torch.save(ckpt, out / "old.ckpt")
    with pytest.raises(UserError, match="older netad.*cannot continue training") as info:
        fit_split(cfg, table, rows[:180], rows[180:240], out, name="fold", run_name="run", quiet=True,
                  resume_from=out / "old.ckpt")
    assert "\n" not in str(info.value) and "old.ckpt" in str(info.value)
    frame = table.features.iloc[rows[240:]]
    scores = NetadPredictor.from_checkpoint(out / "old.ckpt").score(frame)
    np.testing.assert_array_equal(scores, NetadPredictor.from_checkpoint(out / "last.ckpt").score(frame))
    assert float(classifier_from_checkpoint(read_checkpoint(out / "old.ckpt")).threshold) == \
        read_checkpoint(out / "last.ckpt")["netad"]["threshold"]


def test_plateau_scheduler_steps_once_per_epoch_on_validation_loss(tmp_path, monkeypatch):
    cfg, _, out = _fit(tmp_path, 64, monkeypatch, training__scheduler="plateau")
    state = read_checkpoint(out / "last.ckpt")["lr_schedulers"][0]
    acc = EventAccumulator(str(Path(cfg.logging.tensorboard_dir) / "run" / "fold"))
    acc.Reload()
    val_losses = [event.value for event in acc.Scalars("val/loss")]
    assert state["last_epoch"] == EPOCHS == len(val_losses)
    assert state["best"] == pytest.approx(min(val_losses), rel=1e-6)


class _StopAfterEpoch(Callback):
    """Asks the trainer to stop after the given epoch, as early stopping does (before checkpoints are written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def _throttled_fit(tmp_path: Path, every: str, callbacks: list) -> Path:
    tmp_path.mkdir()
    csv_path = tmp_path / "traffic.csv"
    make_frame(n=300, seed=5).to_csv(csv_path, index=False)
    cfg = fast_config(tmp_path, csv_path, training__num_epochs=str(EPOCHS), checkpoint__last_every_seconds=every)
    table = load_table(cfg.data)
    rows = np.arange(len(table))
    out = tmp_path / "fold"
    fit_split(cfg, table, rows[:180], rows[180:240], out, name="fold", run_name="run", quiet=True,
              extra_callbacks=callbacks)
    return out


def test_last_checkpoint_waits_for_its_interval_but_is_written_after_the_last_epoch(tmp_path):
    from conftest import Crash, CrashAtEpoch

    with pytest.raises(Crash):  # two epochs done, well inside the interval: no last.ckpt yet
        _throttled_fit(tmp_path / "crash", "1e6", [CrashAtEpoch(2)])
    assert not (tmp_path / "crash" / "fold" / "last.ckpt").exists()
    assert (tmp_path / "crash" / "fold" / "best.ckpt").is_file()  # the best epoch is never throttled

    out = _throttled_fit(tmp_path / "full", "1e6", [])
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1

    # a fit stopped early (should_stop set before the checkpoint callbacks run) still ends with its last epoch
    out = _throttled_fit(tmp_path / "stopped", "1e6", [_StopAfterEpoch(1)])
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 1


def test_best_checkpoint_holds_what_scoring_needs_and_no_training_state(tmp_path, monkeypatch):
    _, result, out = _fit(tmp_path, 64, monkeypatch)
    best = torch.load(out / "best.ckpt", weights_only=True)
    assert "optimizer_states" not in best and "callbacks" not in best
    assert "optimizer_states" in torch.load(out / "last.ckpt", weights_only=True)  # what a resume needs
    assert NetadPredictor.from_checkpoint(out / "best.ckpt").threshold == result.threshold


def test_the_first_process_decides_when_last_checkpoint_is_due(tmp_path, monkeypatch):
    """Under DDP a save ends at a barrier: every process must take the same decision, the first one's."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    asked = []

    def broadcast(self, obj, src=0):
        if not isinstance(obj, bool):  # Lightning broadcasts other things too (the checkpoint folder)
            return obj
        asked.append(obj)
        return False  # the first process says "not due": no process may write
    monkeypatch.setattr(SingleDeviceStrategy, "broadcast", broadcast)
    out = _throttled_fit(tmp_path / "b", "0", [])  # due after every epoch on this process's own clock
    assert asked == [True] * EPOCHS and not (out / "last.ckpt").exists()
