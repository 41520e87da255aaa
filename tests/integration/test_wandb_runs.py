"""What the offline W&B runs hold: read back from the run files themselves (the records wandb syncs later)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fast_config
from wandb_records import summarize_run
from netad.training.cv import run_cv


def test_wandb_fallback_to_offline_writes_one_run_per_fold_final_and_summary(tmp_path, csv_path, monkeypatch):
    # online asked, but no credentials anywhere: the code must choose offline itself (no WANDB_MODE help),
    # and any attempt to reach a server would hit a closed local port
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc-absent"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "home" / "wandb-cache"))
    cfg = fast_config(tmp_path, csv_path, logging__use_wandb="true", logging__wandb_mode="online",
                      cross_validation__n_splits="2", training__num_epochs="2")
    with pytest.warns(UserWarning, match="no W&B API key"):
        result = run_cv(cfg, run_name="wb", quiet=True)

    root = Path(cfg.logging.wandb_dir) / "wandb"
    assert not list(root.glob("run-*")), "an online run was started"
    runs = {}
    for folder in sorted(root.glob("offline-run-*")):
        files = list(folder.glob("*.wandb"))
        assert len(files) == 1, folder
        info = summarize_run(files[0])
        runs[info["name"]] = info
    assert set(runs) == {"wb/fold_0", "wb/fold_1", "wb/final", "wb/summary"}
    assert all(info["group"] == "wb" for info in runs.values())
    assert runs["wb/summary"]["job_type"] == "summary"
    assert {"cv/auroc_mean", "cv/auroc_std"} <= runs["wb/summary"]["keys"]
    for fold in ("wb/fold_0", "wb/fold_1"):
        assert runs[fold]["job_type"] == "fold"
        assert {"train/loss", "train/auroc", "val/loss", "val/auroc", "val/f1", "val/auprc", "test/auroc"} \
            <= runs[fold]["keys"], fold
    assert {"train/loss", "val/auroc"} <= runs["wb/final"]["keys"]
    assert "test/auroc" not in runs["wb/final"]["keys"]  # the final model has no held-out rows of its own
    assert Path(result.files["wandb_summary"]).is_relative_to(root)
