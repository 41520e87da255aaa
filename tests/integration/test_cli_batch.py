"""train.py through real interpreters, started side by side (each pays a ~4 s start-up): resumes run
from a directory without any config.yaml, and every kind of bad input ends in one line on stderr
and exit code 2, without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import netad.training.cv as cv_module
from conftest import Crash, CrashAtEpoch, ROOT, fast_config, make_frame
from netad.errors import UserError
from netad.models import load_classifier
from netad.training.cv import run_cv, run_single

pytestmark = pytest.mark.slow  # real processes started side by side: `make test-slow` (CI runs both)


def _write_config(path: Path, cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def _interrupted_single_run(base: Path, csv: Path) -> Path:
    """A single-split run killed at the start of epoch 2 (run_single takes no callbacks: wrap fit_split)."""
    original = cv_module.fit_split

    def crashing(*args, **kwargs):
        return original(*args, **dict(kwargs, extra_callbacks=[CrashAtEpoch(2)]))

    cfg = fast_config(base / "single", csv, training__num_epochs="4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cv_module, "fit_split", crashing)
        with pytest.raises(Crash):
            run_single(cfg, run_name="s", quiet=True)
    run = Path(cfg.checkpoint.save_dir) / "s"
    assert (run / "single" / "last.ckpt").is_file() and not (run / "single" / "result.json").exists()
    return run


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_batch")
    elsewhere = base / "elsewhere"  # the working directory of every command: no config.yaml in it
    elsewhere.mkdir()
    csv = base / "traffic.csv"
    make_frame().to_csv(csv, index=False)
    info: dict = {"base": base, "csv": csv}

    # --- runs to resume
    info["single_reference"] = run_single(fast_config(base / "single_ref", csv, training__num_epochs="4"),
                                          run_name="s", quiet=True)
    info["single_run"] = _interrupted_single_run(base, csv)
    cv_cfg = fast_config(base / "cv", csv)
    run_cv(cv_cfg, run_name="arr", only_fold=1, quiet=True)  # an array job that ran fold 1 only
    info["cv_run"] = cv_run = Path(cv_cfg.checkpoint.save_dir) / "arr"
    info["cv_fold1_mtime"] = (cv_run / "fold_1" / "result.json").stat().st_mtime_ns
    info["cv_reference"] = run_cv(fast_config(base / "cv_ref", csv), run_name="arr", quiet=True)

    # --- bad inputs
    good = _write_config(base / "good.yaml", fast_config(base / "good", csv))
    missing = _write_config(base / "missing.yaml", fast_config(base / "missing", base / "absent.csv"))
    few = base / "few_positives.csv"
    frame = make_frame(n=300, anomaly_rate=0.0)  # rows 1 and 3 are the only anomalies ...
    frame.loc[[10, 20, 30, 40, 50, 60], "label"] = 1.0  # ... plus six: too few for 5 stratified folds
    frame.to_csv(few, index=False)
    few_cfg = _write_config(base / "few.yaml", fast_config(base / "few", few, cross_validation__n_splits="5"))
    foreign = base / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    corrupt_cfg = fast_config(base / "corrupt", csv, training__num_epochs="4")
    with pytest.raises(Crash):
        run_cv(corrupt_cfg, run_name="r", quiet=True,
               extra_callbacks=lambda name: [CrashAtEpoch(2)] if name == "fold_1" else [])
    corrupt_run = Path(corrupt_cfg.checkpoint.save_dir) / "r"
    last = corrupt_run / "fold_1" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:2000])  # a disk that filled up while saving

    info["errors"] = {
        "unknown --set key": (["--config", str(good), "--set", "training.num_epoch=3"],
                              ("unknown config key 'training.num_epoch'", "training.num_epochs"), base / "good"),
        "--resume of a folder that is not a run": (["--resume", str(elsewhere)], ("not inside a netad run folder",),
                                                   None),
        "--resume of a path that does not exist": (["--resume", str(base / "absent")], ("no such run folder",), None),
        "--resume of a checkpoint that is not ours": (["--resume", str(foreign)], ("not inside a netad run folder",),
                                                      None),
        "--resume with a truncated last.ckpt": (["--resume", str(corrupt_run), "--quiet"],
                                                ("not a netad checkpoint", str(last)), None),
        "missing data file": (["--config", str(missing), "--use-cv", "--quiet"],
                              ("data file not found", "absent.csv"), base / "missing"),
        "too few positives for n_splits": (["--config", str(few_cfg), "--use-cv", "--quiet"],
                                           ("too few", "n_splits"), base / "few"),
    }
    commands = {name: args for name, (args, _, _) in info["errors"].items()}
    commands["resume single"] = ["--resume", str(info["single_run"]), "--quiet"]
    commands["resume cv"] = ["--resume", str(cv_run), "--quiet"]
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=elsewhere,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in commands.items()}
    info["done"] = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            info["done"][name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert not list(elsewhere.iterdir()), "a command wrote into its working directory"
    return info


@pytest.mark.parametrize("case", ["unknown --set key", "--resume of a folder that is not a run",
                                  "--resume of a path that does not exist", "--resume of a checkpoint that is not ours",
                                  "--resume with a truncated last.ckpt", "missing data file",
                                  "too few positives for n_splits"])
def test_bad_input_one_line_exit_2(batch, case):
    _, needles, out_dir = batch["errors"][case]
    code, _, err = batch["done"][case]
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    if out_dir is not None:  # refused before anything was written
        assert not (out_dir / "checkpoints").exists() or not any((out_dir / "checkpoints").iterdir())
        assert not (out_dir / "tb").exists()


def _weights(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def test_resume_single_run_with_the_runs_own_config(batch):
    code, out, err = batch["done"]["resume single"]
    assert code == 0, err
    run, reference = batch["single_run"], batch["single_reference"]
    save_dir = run.parent
    assert "Validation (threshold" in out
    assert f"copied to the default path: {save_dir}/best_model.ckpt" in out  # the run's save_dir, not ./checkpoints
    result = json.loads((run / "single" / "result.json").read_text())
    assert result["epochs_run"] == reference.epochs_run == 4
    assert result["best_epoch"] == reference.best_epoch
    assert result["val_metrics"] == pytest.approx(reference.val_metrics, abs=1e-6)
    assert result["threshold"] == pytest.approx(reference.threshold, abs=1e-6)
    got, want = _weights(save_dir / "best_model.ckpt"), _weights(Path(reference.checkpoint))
    assert got.keys() == want.keys()
    for key in got:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6)


def test_resume_cv_after_an_array_job_ran_one_fold(batch):
    code, out, err = batch["done"]["resume cv"]
    assert code == 0, err
    run = batch["cv_run"]
    assert "Cross-validation (3 folds)" in out
    table = [line.split() for line in out.splitlines()]
    assert [row[0] for row in table if row and row[0] in {"0", "1", "2", "mean"}] == ["0", "1", "2", "mean"]
    assert any(line.startswith("The model beats chance") or line.startswith("The model does NOT beat chance")
               for line in out.splitlines())
    assert (run / "fold_1" / "result.json").stat().st_mtime_ns == batch["cv_fold1_mtime"], "fold 1 was retrained"
    assert sorted(p.parent.name for p in run.glob("*/result.json")) == ["final", "fold_0", "fold_1", "fold_2"]
    assert (run.parent / "best_model.ckpt").is_file() and (run / "cv_results.json").is_file()
    saved = json.loads((run / "cv_results.json").read_text())
    for got, want in zip(saved["folds"], batch["cv_reference"].folds):
        assert got == pytest.approx(want, abs=1e-6)
    for path in (line.split(": ", 1)[1].split(" and ") for line in out.splitlines() if line.startswith("Results:")):
        assert all(Path(p).is_relative_to(batch["base"]) for p in path)


def test_load_classifier_refuses_checkpoints_that_are_not_ours(tmp_path, batch):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {}}, foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"netad": {"format": 1}, "payload": np.random.default_rng(0)}, pickled)  # arbitrary objects
    truncated = tmp_path / "truncated.ckpt"
    ours = Path(batch["single_reference"].checkpoint)
    truncated.write_bytes(ours.read_bytes()[:3000])
    for path in (foreign, text, pickled, truncated):
        with pytest.raises(UserError, match="not a netad checkpoint"):
            load_classifier(path)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_classifier(tmp_path / "absent.ckpt")
    assert load_classifier(ours).metadata["split"] == "single"
