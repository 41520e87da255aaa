"""train.py and test.py as a person runs them: exit codes, output, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, fast_config, make_frame


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def write_config(tmp_path: Path, cfg) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def assert_one_line_error(returncode: int, stderr: str, *needles: str) -> None:
    assert returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def run_train_in_process(capsys, *args: str) -> tuple[int, str]:
    """train.py is a thin wrapper around train_main: the same code path, without a 4 s interpreter start."""
    from netad.cli import train_main

    capsys.readouterr()
    code = train_main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_train_cv_then_test_end_to_end(tmp_path, cfg):
    config = write_config(tmp_path, cfg)
    proc = run_script("train.py", "--config", str(config), "--use-cv", "--quiet", "--run-name", "e2e", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Cross-validation (3 folds)" in out and "mean" in out and "majority" in out
    assert "The model beats chance" in out or "does NOT beat chance" in out
    assert "cv_results.json" in out
    assert out.splitlines()[0] == f"Run folder: {Path(cfg.checkpoint.save_dir) / 'e2e'}"  # said even under --quiet
    assert "% of normal rows (false-positive rate)" in out
    # --quiet: no progress and no third-party notes; the project's own warnings stay
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "warning: dropping columns that are constant in the training rows: constant"], proc.stderr
    saved = json.loads((Path(cfg.checkpoint.save_dir) / "e2e" / "cv_results.json").read_text())
    assert f"{saved['summary']['auroc']['mean']:.3f}" in out

    proc = run_script("test.py", "--checkpoint", str(Path(cfg.checkpoint.save_dir) / "best_model.ckpt"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "test hold-out" in proc.stdout and "auroc" in proc.stdout


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_single_split_and_set_override(tmp_path, cfg):
    config = write_config(tmp_path, cfg)
    proc = run_script("train.py", "--config", str(config), "--quiet", "--set", "training.num_epochs=2",
                      "--run-name", "one", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Validation (threshold" in proc.stdout
    result = json.loads((Path(cfg.checkpoint.save_dir) / "one" / "single" / "result.json").read_text())
    assert result["epochs_run"] == 2
    assert (Path(cfg.checkpoint.save_dir) / "best_model.ckpt").is_file()


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_one_fold_only(tmp_path, cfg):
    config = write_config(tmp_path, cfg)
    proc = run_script("train.py", "--config", str(config), "--use-cv", "--fold", "1", "--run-name", "arr",
                      "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = Path(cfg.checkpoint.save_dir) / "arr"
    assert sorted(p.parent.name for p in run.glob("*/result.json")) == ["fold_1"]
    assert not (run / "cv_results.json").exists()


def _bad_data_cases(tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    frame = make_frame(n=120)
    cases = {}
    no_label = tmp_path / "no_label.csv"
    frame.drop(columns=["label"]).to_csv(no_label, index=False)
    cases["no label column"] = (no_label, ("label column 'label' not found",))
    one_class = tmp_path / "one_class.csv"
    frame.assign(label=0.0).to_csv(one_class, index=False)
    cases["one class"] = (one_class, ("only one class",))
    with_nan = tmp_path / "nan.csv"
    broken = frame.copy()
    broken.loc[[3, 7, 9], "packet_size"] = np.nan
    broken.loc[5, "inter_arrival_time"] = np.inf
    broken.to_csv(with_nan, index=False)
    cases["nan"] = (with_nan, ("'packet_size' (3 rows)", "'inter_arrival_time' (1 rows)", "nan_policy"))
    few = tmp_path / "few_positives.csv"
    frame.assign(label=[1.0] * 4 + [0.0] * (len(frame) - 4)).to_csv(few, index=False)
    cases["too few positives"] = (few, ("n_splits",))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases["empty"] = (empty, ("empty",))
    cases["missing"] = (tmp_path / "nope.csv", ("not found",))
    bad_labels = tmp_path / "labels.csv"
    frame.assign(label=np.where(frame["label"] > 0, "attack", "benign")).to_csv(bad_labels, index=False)
    cases["unmappable labels"] = (bad_labels, ("normal_value",))
    return cases


@pytest.mark.parametrize("case", ["no label column", "one class", "nan", "too few positives", "empty", "missing",
                                  "unmappable labels"])
def test_bad_data_exits_2_with_one_line(tmp_path, capsys, case):
    path, needles = _bad_data_cases(tmp_path)[case]
    config = write_config(tmp_path, fast_config(tmp_path, path))
    assert_one_line_error(*run_train_in_process(capsys, "--config", str(config), "--use-cv", "--quiet"), *needles)
    checkpoints = tmp_path / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir()), "a failed run left files behind"


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_bad_data_through_the_real_script(tmp_path):
    path, needles = _bad_data_cases(tmp_path)["nan"]
    config = write_config(tmp_path, fast_config(tmp_path, path))
    proc = run_script("train.py", "--config", str(config), "--use-cv", "--quiet", cwd=tmp_path)
    assert_one_line_error(proc.returncode, proc.stderr, *needles)


def test_bad_config_and_flags_exit_2(tmp_path, cfg, capsys):
    config = str(write_config(tmp_path, cfg))
    assert_one_line_error(*run_train_in_process(capsys, "--config", config, "--set", "training.lerning_rate=0.1"),
                          "training.lerning_rate", "training.learning_rate")
    assert_one_line_error(*run_train_in_process(capsys, "--config", config, "--set", "model.dropout=1.5"),
                          "model.dropout", "< 1")
    assert_one_line_error(*run_train_in_process(capsys, "--config", config, "--fold", "1"), "--fold needs --use-cv")
    assert_one_line_error(*run_train_in_process(capsys, "--config", config, "--use-cv", "--fold", "7"),
                          "--fold 7")
    assert_one_line_error(*run_train_in_process(capsys, "--resume", str(tmp_path)), "not inside a netad run folder")
    assert_one_line_error(*run_train_in_process(capsys, "--config", str(tmp_path / "missing.yaml")),
                          "config file not found")


def test_progress_lines_on_stdout_and_only_where_the_run_is_under_quiet(tmp_path, cfg, capsys):
    """Training says its progress through the netad logger; train.py shows it on stdout before the results
    (once, however many commands ran in the process), and under --quiet only the line that says where the run is."""
    from netad.cli import train_main

    cfg.cross_validation.n_splits = 2
    cfg.training.num_epochs = 1
    config = str(write_config(tmp_path, cfg))
    save_dir = Path(cfg.checkpoint.save_dir)
    capsys.readouterr()
    assert train_main(["--config", config, "--use-cv", "--run-name", "talk"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"Run folder: {save_dir / 'talk'}"
    assert lines[1] == "Fold 1/2: " + lines[1].split(": ", 1)[1] and out.count("Fold 2/2: ") == 1
    assert out.index("Final model on all") < out.index("Cross-validation (2 folds)")
    assert "Run folder" not in err and "Fold 1/2" not in err

    assert train_main(["--config", config, "--quiet", "--run-name", "hush"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [f"Run folder: {save_dir / 'hush'}", ""]
    assert out.splitlines()[2].startswith("Validation (threshold ") and "Training on" not in out
    assert train_main(["--resume", str(save_dir / "hush"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [f"Resuming run {save_dir / 'hush'} (finished: single)", ""]
    assert "finished earlier" not in out and "Resuming" not in err
    assert f"copied to the default path: {save_dir / 'best_model.ckpt'}" in out


def test_checkpoint_that_is_not_ours(tmp_path, capsys):
    import torch

    from netad.cli import test_main

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    for path in (foreign, text):
        capsys.readouterr()
        code = test_main(["--checkpoint", str(path)])
        assert_one_line_error(code, capsys.readouterr().err, "not a netad checkpoint")
    code = test_main(["--checkpoint", str(tmp_path / "absent.ckpt")])
    assert_one_line_error(code, capsys.readouterr().err, "checkpoint not found")


def test_damaged_run_folder_files_are_one_line(tmp_path, cfg, capsys):
    """A resume from a run folder whose bookkeeping was cut short or edited: one line naming the file."""
    import shutil

    from netad.cli import train_main
    from netad.training.cv import run_cv

    cfg.cross_validation.n_splits = 2
    cfg.training.num_epochs = 1
    run = run_cv(cfg, run_name="ok", quiet=True).run_dir
    damage = {
        "splits.json cut short": ("splits.json", lambda p: p.write_text(p.read_text()[:50])),
        "splits.json without folds": ("splits.json", lambda p: p.write_text('{"n_rows": 3}')),
        "splits.json pointing past the data": ("splits.json", lambda p: p.write_text(
            p.read_text().replace('"test":[', '"test":[999999,', 1))),
        "config.yaml not YAML": ("config.yaml", lambda p: p.write_text("model: [unclosed\n")),
        "config.yaml a list": ("config.yaml", lambda p: p.write_text("- 1\n- 2\n")),
        "config.yaml not UTF-8": ("config.yaml", lambda p: p.write_bytes(b"model:\n  dropout: \xff\n")),
        "result.json cut short": ("fold_0/result.json", lambda p: p.write_text(p.read_text()[:20])),
    }
    for i, (case, (name, spoil)) in enumerate(damage.items()):
        copy = tmp_path / f"damaged_{i}"
        shutil.copytree(run, copy)
        spoil(copy / name)
        capsys.readouterr()
        code = train_main(["--resume", str(copy), "--quiet"])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (case, err)
        assert str(copy / name) in lines[0] and "damaged" in lines[0], (case, lines[0])


def test_the_package_cli_lists_its_commands(capsys):
    from netad.cli import COMMANDS, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n  {name} " in out, name
    assert main([]) == 2 and "commands:" in capsys.readouterr().err
    assert main(["trian"]) == 2
    assert capsys.readouterr().err.strip() == f"error: unknown command 'trian'; one of: {', '.join(COMMANDS)}"


def test_the_license_the_package_names_is_in_the_repository():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()


def test_quiet_shows_the_projects_own_warnings_as_one_line_and_no_others():
    import subprocess
    import sys

    code = ("import warnings; from netad.cli import _setup_logging; from netad.errors import NetadWarning; "
            "_setup_logging(quiet=True); warnings.warn(NetadWarning('ours')); warnings.warn(UserWarning('theirs')); "
            "warnings.warn(DeprecationWarning('old'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "warning: ours\n", proc.stderr
