"""One small cross-validation run, read by many checks: outputs, leakage, fresh weights,
thresholds from validation rows, TensorBoard keys and determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from conftest import fast_config, make_frame
from netad.data.preprocessing import TabularPreprocessor
from netad.metrics import choose_threshold
from netad.models import load_classifier
from netad.training.cv import run_cv


class RecordInitialWeights(Callback):
    """Copies the weights a fit starts from (before its first step)."""

    def __init__(self, store: dict, name: str) -> None:
        self.store, self.name = store, name

    def on_train_start(self, trainer, pl_module) -> None:
        self.store[self.name] = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    frame = make_frame(n=300, signal=2.0, seed=1)
    csv_path = tmp / "traffic.csv"
    frame.to_csv(csv_path, index=False)
    cfg = fast_config(tmp, csv_path)
    initial: dict = {}
    result = run_cv(cfg, run_name="run", extra_callbacks=lambda name: [RecordInitialWeights(initial, name)])
    return {"cfg": cfg, "result": result, "run": Path(result.run_dir), "frame": frame, "csv": csv_path,
            "initial": initial, "tmp": tmp}


def _splits(run: Path) -> dict:
    return json.loads((run / "splits.json").read_text())


def test_k_results_and_files(cv_run):
    cfg, result, run = cv_run["cfg"], cv_run["result"], cv_run["run"]
    k = cfg.cross_validation.n_splits
    assert [row["fold"] for row in result.folds] == list(range(k))
    for name in ("cv_results.json", "cv_results.csv", "oof_predictions.csv", "manifest.json", "config.yaml"):
        assert (run / name).is_file(), name
    with (run / "cv_results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["fold"] for r in rows] == [str(i) for i in range(k)] + ["mean", "std"]
    saved = json.loads((run / "cv_results.json").read_text())
    assert len(saved["folds"]) == k and saved["summary"]["auroc"]["mean"] == pytest.approx(
        np.mean([f["auroc"] for f in saved["folds"]]))
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["finished"]) >= {f"fold_{i}" for i in range(k)} | {"final"}
    # each fold keeps its own checkpoints
    for i in range(k):
        assert (run / f"fold_{i}" / "best.ckpt").is_file() and (run / f"fold_{i}" / "last.ckpt").is_file()
    best_model = Path(cfg.checkpoint.save_dir) / "best_model.ckpt"
    assert result.final_checkpoint == str(best_model) and best_model.is_file()
    model = load_classifier(best_model)
    assert model.metadata["split"] == "final"


def test_oof_predictions_cover_each_dev_row_once(cv_run):
    run, frame = cv_run["run"], cv_run["frame"]
    splits = _splits(run)
    oof = pd.read_csv(run / "oof_predictions.csv")
    assert sorted(oof["row"]) == sorted(splits["dev"])
    assert (oof["label"].to_numpy() == frame["label"].to_numpy()[oof["row"]].astype(int)).all()
    assert set(oof["row"]).isdisjoint(splits["test"])


def test_test_rows_never_in_folds_and_parts_disjoint(cv_run):
    splits = _splits(cv_run["run"])
    test = set(splits["test"])
    for fold in splits["folds"]:
        parts = [set(fold[p]) for p in ("train", "val", "eval")]
        assert all(test.isdisjoint(p) for p in parts)
        assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])


def test_leakage_scaler_fitted_on_fold_training_rows_only(cv_run):
    run, frame = cv_run["run"], cv_run["frame"]
    for fold in _splits(run)["folds"]:
        ckpt = torch.load(run / f"fold_{fold['fold']}" / "best.ckpt", map_location="cpu", weights_only=True)
        numeric = ckpt["netad"]["preprocessor"]["numeric"]
        cols = numeric["columns"]
        assert cols == ["packet_size", "inter_arrival_time", "bytes"]
        train = frame.iloc[fold["train"]][cols]
        np.testing.assert_allclose(numeric["center"], train.mean().to_numpy(), rtol=1e-10)
        np.testing.assert_allclose(numeric["scale"], train.std(ddof=0).to_numpy(), rtol=1e-10)
        # and not the statistics of all rows (which would leak val/eval/test rows into training)
        assert not np.allclose(numeric["center"], frame[cols].mean().to_numpy(), rtol=1e-6)


def test_fresh_weights_per_fold(cv_run):
    run, initial = cv_run["run"], cv_run["initial"]
    k = cv_run["cfg"].cross_validation.n_splits
    for i in range(1, k):
        start = initial[f"fold_{i}"]
        trained_before = torch.load(run / f"fold_{i - 1}" / "last.ckpt", map_location="cpu", weights_only=True)
        prev = {k_[len("model."):]: v for k_, v in trained_before["state_dict"].items() if k_.startswith("model.")}
        assert set(prev) == set(start)
        assert not any(torch.equal(start[name], prev[name]) for name in start), "fold started from old weights"
        assert not torch.equal(start["net.0.weight"], initial[f"fold_{i - 1}"]["net.0.weight"])


def test_threshold_is_chosen_on_validation_rows(cv_run):
    run, frame = cv_run["run"], cv_run["frame"]
    features = frame.drop(columns=["label"])
    labels = frame["label"].to_numpy().astype(int)
    for fold in _splits(run)["folds"]:
        path = run / f"fold_{fold['fold']}" / "best.ckpt"
        model = load_classifier(path)
        stored = torch.load(path, map_location="cpu", weights_only=True)["netad"]["threshold"]
        assert float(model.threshold) == pytest.approx(stored)
        pre = TabularPreprocessor.from_state(model.preprocessor_state)

        def scores(rows, model=model, pre=pre):
            with torch.no_grad():
                return torch.sigmoid(model(torch.from_numpy(pre.transform(features.iloc[rows])))).numpy()

        val_rows = fold["val"]
        assert stored == pytest.approx(choose_threshold(scores(val_rows), labels[val_rows]), abs=1e-6)
        eval_choice = choose_threshold(scores(fold["eval"]), labels[fold["eval"]])
        assert eval_choice != pytest.approx(stored, abs=1e-6), "threshold matches the held-out rows' own optimum"


def test_tensorboard_event_files_hold_metric_keys(cv_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(cv_run["cfg"].logging.tensorboard_dir) / "run"
    for fold in ("fold_0", "fold_1", "fold_2"):
        acc = EventAccumulator(str(tb / fold))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        for key in ("train/loss", "train/auroc", "train/f1", "val/loss", "val/auroc", "val/auprc", "val/f1",
                    "val/precision", "val/recall", "val/accuracy", "test/auroc", "test/f1"):
            assert key in tags, f"{fold}: {key} missing from {sorted(tags)}"
        assert len(acc.Scalars("val/loss")) == cv_run["cfg"].training.num_epochs


def test_same_seed_gives_identical_results(cv_run, tmp_path):
    again = run_cv(fast_config(tmp_path, cv_run["csv"]), run_name="run", quiet=True)
    assert again.folds == cv_run["result"].folds
    first = pd.read_csv(cv_run["run"] / "oof_predictions.csv")
    second = pd.read_csv(Path(again.run_dir) / "oof_predictions.csv")
    pd.testing.assert_frame_equal(first, second)
