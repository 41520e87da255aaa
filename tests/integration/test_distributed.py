"""Folds as independent jobs (--fold K on k machines, then --gather), and DDP through Lightning's own launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, fast_config
from netad.cli import train_main
from netad.models.checkpoint import read_checkpoint
from netad.training.cv import run_cv


def write_config(folder: Path, cfg) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def train_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE",
                                                             "NETAD_RUN_NAME", "MASTER_PORT")}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.slow  # real processes: runs in `make test-slow` (CI runs both)
def test_fold_jobs_and_gather_give_the_results_of_one_cv_run(tmp_path, csv_path, capsys):
    settings = {"cross_validation__permutation_baseline": "true", "training__num_epochs": "3"}
    reference = run_cv(fast_config(tmp_path / "one", csv_path, **settings), run_name="ref", quiet=True)

    config = write_config(tmp_path / "jobs", fast_config(tmp_path / "jobs", csv_path, **settings))
    args = ["--config", str(config), "--use-cv", "--quiet", "--run-name", "arr"]
    run = tmp_path / "jobs" / "checkpoints" / "arr"
    # a job array, out of order: fold 2 in a fresh interpreter (another machine), fold 0 in this process
    proc = train_script(*args, "--fold", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert train_main([*args, "--fold", "0"]) == 0
    finished = json.loads((run / "manifest.json").read_text())["finished"]
    assert finished == ["baselines/permutation_fold_0", "baselines/permutation_fold_2", "fold_0", "fold_2"]

    # gathering before every fold is done: one line naming the missing fold, nothing trained or summarised
    err = one_line_error(capsys, [*args, "--gather"])
    assert "has not finished fold 1 " in err and "--fold 1 trains it" in err
    assert not (run / "cv_results.json").exists() and not (run / "final").exists() and not (run / "fold_1").exists()

    assert train_main([*args, "--fold", "1"]) == 0
    trained = {p: p.stat().st_mtime_ns for p in run.glob("**/result.json")}
    capsys.readouterr()
    assert train_main([*args, "--gather"]) == 0
    out = capsys.readouterr().out
    assert "Cross-validation (3 folds)" in out and "Final model:" in out
    assert all(p.stat().st_mtime_ns == t for p, t in trained.items())  # the gather step retrained nothing

    got = json.loads((run / "cv_results.json").read_text())
    want = json.loads((Path(reference.run_dir) / "cv_results.json").read_text())
    for key in ("folds", "summary", "baselines", "verdict", "n_rows", "n_test_rows"):
        assert got[key] == want[key], key
    pd.testing.assert_frame_equal(pd.read_csv(run / "oof_predictions.csv"),
                                  pd.read_csv(Path(reference.run_dir) / "oof_predictions.csv"))
    final, final_ref = (json.loads((r / "final" / "result.json").read_text()) for r in (run, Path(reference.run_dir)))
    assert final["val_metrics"] == final_ref["val_metrics"] and final["threshold"] == final_ref["threshold"]


def test_gather_flag_errors(tmp_path, cfg, capsys):
    config = str(write_config(tmp_path, cfg))
    base = ["--config", config, "--use-cv"]
    assert "--gather needs the run's name" in one_line_error(capsys, [*base, "--gather"])
    assert "give one of them, not both" in one_line_error(capsys, [*base, "--gather", "--fold", "1",
                                                                     "--run-name", "x"])
    assert "--gather needs --use-cv" in one_line_error(capsys, ["--config", config, "--gather", "--run-name", "x"])
    assert "there is no run 'nope'" in one_line_error(capsys, [*base, "--gather", "--run-name", "nope"])
    assert not (tmp_path / "checkpoints" / "nope").exists()


@pytest.mark.slow  # real processes: runs in `make test-slow` (CI runs both)
def test_ddp_with_two_cpu_processes(tmp_path, csv_path):
    """strategy: ddp through Lightning's own launcher (gloo on the CPU): each process trains on half the
    training rows, the processes share one run folder (no --run-name given) and only the first writes."""
    cfg = fast_config(tmp_path, csv_path, trainer__strategy="ddp", trainer__devices="2",
                      cross_validation__n_splits="2", training__num_epochs="2")
    proc = train_script("--config", str(write_config(tmp_path, cfg)), "--use-cv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Run folder:") == 1 and proc.stdout.count("Cross-validation (2 folds)") == 1

    checkpoints = tmp_path / "checkpoints"
    runs = [p for p in checkpoints.iterdir() if p.is_dir()]
    assert len(runs) == 1 and (checkpoints / "best_model.ckpt").is_file()
    run = runs[0]
    assert json.loads((run / "manifest.json").read_text())["finished"] == ["final", "fold_0", "fold_1"]
    assert not list(run.glob("**/.lock")) and not list(run.glob("**/*.tmp"))
    assert len(json.loads((run / "cv_results.json").read_text())["folds"]) == 2

    n_train = len(json.loads((run / "splits.json").read_text())["folds"][0]["train"])
    batch = cfg.training.batch_size
    per_process = -(-n_train // 2)
    steps = read_checkpoint(run / "fold_0" / "last.ckpt")["global_step"]
    assert steps == 2 * -(-per_process // batch)  # two epochs over half of the rows each
    assert steps < 2 * -(-n_train // batch)       # what one process over all of them would take
