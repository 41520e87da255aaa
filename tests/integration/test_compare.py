"""compare.py end to end on a small fixture: every detector on the same folds, files, logs, no leakage."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, fast_config, make_frame
from netad.cli import compare_main
from netad.config import DETECTOR_NAMES
from netad.detectors import DETECTORS
from netad.detectors.classic import PCADetector
from netad.evaluation.compare import run_compare
from netad.training.cv import compute_splits
from netad.data.loading import load_table

FAST = ["detectors.params={ae: {epochs: 3}, vae: {epochs: 3}, kmeans: {n_clusters: [3, 5]}}", "training.num_epochs=15"]


def test_registry_matches_the_config_names():
    assert tuple(DETECTORS) == DETECTOR_NAMES


def test_every_detector_on_the_same_folds_end_to_end(tmp_path, csv_path, capsys, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = fast_config(tmp_path, csv_path)
    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(cfg.to_dict()))
    external = tmp_path / "external.csv"
    make_frame(n=120, seed=5).to_csv(external, index=False)
    out = tmp_path / "cmp"
    capsys.readouterr()
    code = compare_main(["--config", str(config), "--output", str(out), "--test-data", str(external), "--quiet",
                         *sum((["--set", s] for s in FAST), [])])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    names = ["classifier", *DETECTOR_NAMES]
    board = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert sorted(r["detector"] for r in board) == sorted(names)
    aurocs = [float(r["auroc_mean"]) for r in board]
    assert aurocs == sorted(aurocs, reverse=True)  # best first
    folds = list(csv.DictReader((out / "folds.csv").open()))
    assert len(folds) == 3 * len(names)
    for entry in board:
        mine = [float(f["auroc"]) for f in folds if f["detector"] == entry["detector"]]
        assert float(entry["auroc_mean"]) == pytest.approx(np.mean(mine))
        assert float(entry["auroc_std"]) == pytest.approx(np.std(mine, ddof=1))
        assert 0.0 <= float(entry["test_auroc_mean"]) <= 1.0 and float(entry["fit_s"]) >= 0
    # the fixture carries signal in packet_size: the classifier must find it
    classifier = next(r for r in board if r["detector"] == "classifier")
    assert float(classifier["auroc_mean"]) > 0.8
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "leaderboard.json").read_text())
    assert saved["test_data"] == str(external) and len(saved["folds"]) == len(folds)
    for name in names:
        assert any(line.startswith(name) for line in printed.out.splitlines()), name
    assert "test ROC AUC" in printed.out

    (event_dir,) = (Path(cfg.logging.tensorboard_dir) / "compare").iterdir()
    acc = EventAccumulator(str(event_dir), size_guidance={"images": 0})
    acc.Reload()
    assert "Compare/leaderboard" in acc.Tags()["images"]
    assert "Compare/iforest/auroc_mean" in acc.Tags()["scalars"]


class SpyDetector(PCADetector):
    """Records which rows reach fit, calibrate and scoring (by their packet_size-derived first column)."""

    calls: list[tuple[str, int]] = []

    def _fit(self, X):
        SpyDetector.calls.append(("fit", X.shape[0]))
        super()._fit(X)

    def calibrate(self, X_val, y_val, *args, **kwargs):
        SpyDetector.calls.append(("calibrate", len(y_val)))
        return super().calibrate(X_val, y_val, *args, **kwargs)


def test_detectors_see_only_their_fold_rows(tmp_path, csv_path, monkeypatch):
    """Fit on the fold's normal training rows, threshold on its validation rows; the test hold-out never."""
    monkeypatch.setitem(DETECTORS, "pca", SpyDetector)
    SpyDetector.calls = []
    cfg = fast_config(tmp_path, csv_path)
    result = run_compare(cfg, detectors=["pca"], output=tmp_path / "o", log=False)
    table = load_table(cfg.data)
    _, test, folds = compute_splits(cfg, table)
    expected = []
    for f in folds:
        expected += [("fit", int(np.sum(table.labels[f.train] == 0))), ("calibrate", len(f.val))]
    assert SpyDetector.calls == expected
    assert [r["n_eval"] for r in result.folds] == [len(f.eval) for f in folds]
    used = set(np.concatenate([np.concatenate([f.train, f.val, f.eval]) for f in folds]).tolist())
    assert used.isdisjoint(test.tolist())


def test_the_classifier_row_is_the_model_train_py_trains(tmp_path, csv_path):
    """compare's classifier is each fold's train.py model (fit_split: best epoch, validation threshold), its
    checkpoints in the output folder, its held-out rows scored raw by the predictor: the CV fold table's numbers."""
    from netad.inference import NetadPredictor
    from netad.training.cv import run_cv

    settings = {"training__num_epochs": "6", "training__early_stopping_patience": "2",
                "cross_validation__train_final_model": "false"}
    reference = run_cv(fast_config(tmp_path / "cv", csv_path, **settings), run_name="cv", quiet=True)
    cfg = fast_config(tmp_path / "cmp", csv_path, **settings)
    out = tmp_path / "cmp" / "out"
    result = run_compare(cfg, detectors=["classifier"], output=out, log=False)
    assert len(result.folds) == len(reference.folds) == cfg.cross_validation.n_splits
    table = load_table(cfg.data)
    _, _, folds = compute_splits(cfg, table)
    for row, want, fold in zip(result.folds, reference.folds, folds):
        assert row["threshold"] == want["threshold"]
        for key in ("auroc", "auprc", "f1", "fpr", "accuracy"):
            assert row[key] == pytest.approx(want[key], abs=1e-12, nan_ok=True), key
        best = out / "classifier" / f"fold_{fold.fold}" / "best.ckpt"
        assert best.is_file() and (best.parent / "last.ckpt").is_file()
        predictor = NetadPredictor.from_checkpoint(best)
        assert predictor.threshold == row["threshold"]
        assert predictor.config["training"]["epoch"] == want["best_epoch"]
    assert not (tmp_path / "cmp" / "tb").exists()  # no loggers


def test_unknown_detector_is_one_line(tmp_path, csv_path, capsys):
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(fast_config(tmp_path, csv_path).to_dict()))
    capsys.readouterr()
    code = compare_main(["--config", str(config), "--detectors", "iforest,isoforest", "--no-log"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown detector(s) isoforest" in err[0]


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_compare_script_runs(tmp_path, csv_path):
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(fast_config(tmp_path, csv_path).to_dict()))
    proc = subprocess.run([sys.executable, str(ROOT / "compare.py"), "--config", str(config), "--detectors",
                           "iforest,hbos", "--no-log", "--quiet", "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Leaderboard (3 folds" in proc.stdout and (tmp_path / "o" / "leaderboard.csv").is_file()
