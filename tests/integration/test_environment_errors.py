"""The machine says no (a full disk, a folder that cannot be written): one line `error: ...`, exit code 2,
nothing half-written where a later run would trust it, and a resume that finishes the job."""

from __future__ import annotations

import errno
import shutil

import pytest
import yaml

from conftest import fast_config, tiny_model
from netad import cli


def one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    return {"ckpt": tiny_model(root, seed=31, run_name="env"), "root": root}


def test_a_full_disk_while_training_is_one_line_and_the_resume_finishes(tmp_path, csv_path, capsys, monkeypatch):
    from netad.training import cv

    cfg = fast_config(tmp_path, csv_path, cross_validation__n_splits="2", training__num_epochs="2")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    target = tmp_path / "checkpoints" / "best_model.ckpt"
    real_copy = shutil.copyfile

    def copy_until_full(src, dst, **kwargs):  # half the file, then the disk is full (as shutil reports it)
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fout.write(fin.read()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr(cv.shutil, "copyfile", copy_until_full)
    capsys.readouterr()
    line = one_line(capsys, cli.train_main(["--config", str(config), "--use-cv", "--quiet", "--run-name", "full"]))
    assert line == f"error: no space left on device while writing {target}"
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))

    monkeypatch.setattr(cv.shutil, "copyfile", real_copy)  # space freed
    assert cli.train_main(["--resume", str(tmp_path / "checkpoints" / "full"), "--quiet"]) == 0
    assert target.read_bytes() == (tmp_path / "checkpoints" / "full" / "final" / "best.ckpt").read_bytes()


def test_a_folder_that_cannot_be_written_is_one_line_for_every_command(model, tmp_path, csv_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    ckpt = str(model["ckpt"])
    cfg = fast_config(tmp_path, csv_path, checkpoint__save_dir=str(blocker / "checkpoints"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    small = fast_config(tmp_path, csv_path)
    small_config = tmp_path / "small.yaml"
    small_config.write_text(yaml.safe_dump(small.to_dict()))
    runs = {
        "train": lambda: cli.train_main(["--config", str(config), "--quiet"]),
        "test": lambda: cli.test_main(["--model", ckpt, "--no-log", "--bootstrap", "0", "--quiet",
                                       "--results", str(blocker / "results.csv")]),
        "assess": lambda: cli.assess_main(["--model", ckpt, "--no-log", "--bootstrap", "0", "--quiet",
                                           "--output", str(blocker / "report")]),
        "upload": lambda: cli.upload_main(["--model", ckpt, "--repo-id", "user/model", "--dry-run",
                                           "--output", str(blocker / "export")]),
        "compare": lambda: cli.compare_main(["--config", str(small_config), "--detectors", "pca", "--no-log",
                                             "--quiet", "--output", str(blocker / "compare")]),
    }
    for name, call in runs.items():
        capsys.readouterr()
        line = one_line(capsys, call())
        assert line.startswith("error: not a folder: ") and str(blocker) in line, (name, line)


def test_a_forbidden_file_is_one_line_naming_it(tmp_path, csv_path, capsys, monkeypatch):
    """Root ignores file modes, so the refusal is injected where every run file is put in place."""
    from netad import io as atomic_io

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(src))  # the temporary name, as the OS says

    cfg = fast_config(tmp_path, csv_path, cross_validation__n_splits="2", training__num_epochs="1")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    monkeypatch.setattr(atomic_io.os, "replace", refuse)
    capsys.readouterr()
    line = one_line(capsys, cli.train_main(["--config", str(config), "--use-cv", "--quiet", "--run-name", "ro"]))
    run = tmp_path / "checkpoints" / "ro"
    assert line.startswith(f"error: permission denied: {run}") and ".tmp" not in line, line
