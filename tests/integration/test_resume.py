"""An interrupted run, resumed, ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from conftest import Crash, CrashAtEpoch, fast_config
from netad.training.cv import run_cv, run_single


# a scheduler and early stopping make the restored state matter, not just the weights
RESUME_SETTINGS = {"training__num_epochs": "5", "training__scheduler": "cosine",
                   "training__early_stopping_patience": "3", "checkpoint__save_every_n_epochs": "2"}


def test_cv_resume_matches_uninterrupted(tmp_path, csv_path, caplog):
    reference = run_cv(fast_config(tmp_path / "a", csv_path, **RESUME_SETTINGS), run_name="r", quiet=True)

    cfg = fast_config(tmp_path / "b", csv_path, **RESUME_SETTINGS)
    with pytest.raises(Crash):
        run_cv(cfg, run_name="r", quiet=True,
               extra_callbacks=lambda name: [CrashAtEpoch(2)] if name == "fold_1" else [])
    run = Path(cfg.checkpoint.save_dir) / "r"
    assert (run / "fold_0" / "result.json").is_file()
    assert (run / "fold_1" / "last.ckpt").is_file() and not (run / "fold_1" / "result.json").exists()
    assert (run / "fold_1" / "epoch-001.ckpt").is_file()  # every-N-epochs checkpoints
    assert json.loads((run / "manifest.json").read_text())["finished"] == ["fold_0"]
    fold0_mtime = (run / "fold_0" / "result.json").stat().st_mtime_ns

    caplog.set_level(logging.INFO, logger="netad")  # the progress lines
    resumed = run_cv(None, resume=run, quiet=True)
    messages = caplog.messages
    assert any("fold_0: finished earlier, skipped" in m for m in messages)
    assert any(m.startswith("fold_1: continuing from") and "last.ckpt" in m for m in messages)
    assert (run / "fold_0" / "result.json").stat().st_mtime_ns == fold0_mtime

    assert len(resumed.folds) == len(reference.folds)
    for got, want in zip(resumed.folds, reference.folds):
        assert got == pytest.approx(want, abs=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(run / "oof_predictions.csv"),
                                  pd.read_csv(Path(reference.run_dir) / "oof_predictions.csv"))


def test_resume_from_a_checkpoint_path_inside_the_run(tmp_path, csv_path):
    cfg = fast_config(tmp_path, csv_path, training__num_epochs="4")
    with pytest.raises(Crash):
        run_cv(cfg, run_name="r", quiet=True,
               extra_callbacks=lambda name: [CrashAtEpoch(1)] if name == "fold_0" else [])
    result = run_cv(None, resume=Path(cfg.checkpoint.save_dir) / "r" / "fold_0" / "last.ckpt", quiet=True)
    assert len(result.folds) == cfg.cross_validation.n_splits


def test_single_split_resume_matches_uninterrupted(tmp_path, csv_path):
    settings = {"training__num_epochs": "4", "training__scheduler": "step"}
    reference = run_single(fast_config(tmp_path / "a", csv_path, **settings), run_name="s", quiet=True)

    cfg = fast_config(tmp_path / "b", csv_path, **settings)
    from netad.training import fit as fit_module

    original = fit_module.fit_split

    def crashing_fit(*args, **kwargs):
        kwargs["extra_callbacks"] = [CrashAtEpoch(2)]
        return original(*args, **kwargs)

    fit_module_cv = __import__("netad.training.cv", fromlist=["fit_split"])
    fit_module_cv.fit_split = crashing_fit
    try:
        with pytest.raises(Crash):
            run_single(cfg, run_name="s", quiet=True)
    finally:
        fit_module_cv.fit_split = original
    run = Path(cfg.checkpoint.save_dir) / "s"
    assert (run / "single" / "last.ckpt").is_file()
    resumed = run_single(None, resume=run, quiet=True)
    assert resumed.val_metrics == pytest.approx(reference.val_metrics, abs=1e-6)
    assert resumed.threshold == pytest.approx(reference.threshold, abs=1e-7)
    assert (Path(cfg.checkpoint.save_dir) / "best_model.ckpt").is_file()
