"""Run folders shared by several jobs: configs must match, writes never collide, folds are locked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from conftest import fast_config, make_frame
from netad.errors import UserError
from netad.training.cv import run_cv, run_single
from netad.training.runs import FoldLock, write_json


def test_reusing_a_run_name_with_another_config_is_refused(tmp_path, csv_path):
    cfg = fast_config(tmp_path, csv_path, training__num_epochs="1")
    run_cv(cfg, run_name="r", only_fold=0, quiet=True)
    # the same config joins the run (what parallel --fold jobs do); logging settings may differ
    same = fast_config(tmp_path, csv_path, training__num_epochs="1", logging__use_wandb="false",
                       logging__tensorboard_dir=str(tmp_path / "other-tb"))
    run_cv(same, run_name="r", only_fold=1, quiet=True)
    other = fast_config(tmp_path, csv_path, training__num_epochs="1", model__hidden_dims="[4]")
    with pytest.raises(UserError, match=r"different config \(differs in: model.hidden_dims\)"):
        run_cv(other, run_name="r", only_fold=2, quiet=True)
    with pytest.raises(UserError, match="cross-validation run"):
        run_single(cfg, run_name="r", quiet=True)


def _hammer(path: str) -> int:
    for i in range(150):
        write_json(Path(path), {"i": i, "pid": os.getpid()})
    return os.getpid()


def test_parallel_writers_never_collide(tmp_path):
    target = tmp_path / "manifest.json"
    with ProcessPoolExecutor(max_workers=3) as pool:
        pids = list(pool.map(_hammer, [str(target)] * 3))
    assert len(pids) == 3
    assert target.read_text().startswith("{")
    assert not list(tmp_path.glob(".*tmp")), "temporary files left behind"


def test_fold_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    folder = tmp_path / "fold_0"
    with FoldLock(folder, "fold_0"):
        with pytest.raises(UserError, match=rf"fold_0 is being trained by another process \(pid {os.getpid()}\)"):
            with FoldLock(folder, "fold_0"):
                pass
    assert not (folder / ".lock").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / ".lock").write_text(str(dead.pid))
    with FoldLock(folder, "fold_0"):
        assert (folder / ".lock").read_text() == str(os.getpid())


def test_resume_refuses_changed_data(tmp_path, csv_path):
    cfg = fast_config(tmp_path, csv_path, training__num_epochs="1")
    run_cv(cfg, run_name="r", only_fold=0, quiet=True)
    # same number of rows, different content: the saved row indices would point at other records
    make_frame(seed=99).to_csv(csv_path, index=False)
    with pytest.raises(UserError, match="has changed since run 'r'"):
        run_cv(None, resume=Path(cfg.checkpoint.save_dir) / "r", quiet=True)


def test_resume_flag_combinations(tmp_path, csv_path, capsys):
    from netad.cli import train_main

    cfg = fast_config(tmp_path, csv_path, training__num_epochs="1")
    run_single(cfg, run_name="one", quiet=True)
    run = str(Path(cfg.checkpoint.save_dir) / "one")
    cases = [
        (["--resume", run, "--run-name", "x"], "cannot change them"),
        (["--resume", run, "--fold", "1"], "--fold needs --use-cv"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert train_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and needle in err and "\n" not in err
    with pytest.raises(UserError, match="single train/validation run"):
        run_cv(None, resume=run, quiet=True)


def test_fold_out_of_range_writes_nothing(tmp_path, csv_path):
    cfg = fast_config(tmp_path, csv_path)
    with pytest.raises(UserError, match="--fold 9"):
        run_cv(cfg, run_name="r", only_fold=9, quiet=True)
    assert not Path(cfg.checkpoint.save_dir).exists()


def test_a_single_split_is_a_run_of_one_fit_resumed_locked_and_listed_like_a_fold(tmp_path, csv_path, caplog):
    """run_single goes through the fits of CV: a finished fit is skipped, the manifest lists it, a fit another
    process holds is refused, and best_model.ckpt is its best checkpoint."""
    cfg = fast_config(tmp_path, csv_path, training__num_epochs="1")
    first = run_single(cfg, run_name="one", quiet=True)
    run = Path(cfg.checkpoint.save_dir) / "one"
    assert first.name == "single"
    assert json.loads((run / "manifest.json").read_text())["finished"] == ["single"]
    best = (run / "single" / "best.ckpt").read_bytes()
    assert (Path(cfg.checkpoint.save_dir) / "best_model.ckpt").read_bytes() == best
    finished = (run / "single" / "result.json").stat().st_mtime_ns
    caplog.set_level("INFO", logger="netad")
    again = run_single(None, resume=run, quiet=True)
    assert again == first and (run / "single" / "result.json").stat().st_mtime_ns == finished
    assert "single: finished earlier, skipped" in caplog.messages
    assert any(m.startswith(f"Resuming run {run} (finished: single)") for m in caplog.messages)

    (run / "single" / "result.json").unlink()
    with FoldLock(run / "single", "single"):
        with pytest.raises(UserError, match=rf"single is being trained by another process \(pid {os.getpid()}\)"):
            run_single(None, resume=run, quiet=True)
