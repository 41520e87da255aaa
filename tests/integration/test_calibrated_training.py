"""calibration: temperature | isotonic through training, the checkpoint, export and assess: fitted on the
validation rows after training, the threshold chosen again on the calibrated validation scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import fast_config, make_frame
from netad.cli import assess_main, upload_main
from netad.evaluation.evaluate import open_model, training_rows
from netad.inference import NetadPredictor
from netad.metrics import choose_threshold, expected_calibration_error
from netad.training.cv import run_single
from test_evaluation import assert_one_line_error, cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrated")
    csv_path = root / "traffic.csv"
    make_frame(n=500, signal=1.2, seed=12).to_csv(csv_path, index=False)
    out = {"csv": csv_path}
    for method in ("none", "temperature", "isotonic"):
        cfg = fast_config(root / method, csv_path, calibration=method, training__num_epochs="6")
        run_single(cfg, run_name="c", quiet=True)
        out[method] = root / method / "checkpoints" / "best_model.ckpt"
    return out


def test_temperature_calibrates_after_training_and_keeps_the_ranking(runs):
    raw, cal = NetadPredictor.from_checkpoint(runs["none"]), NetadPredictor.from_checkpoint(runs["temperature"])
    saved = torch.load(runs["temperature"], weights_only=True)["netad"]
    assert saved["calibration"]["method"] == "temperature" and "calibration" not in torch.load(
        runs["none"], weights_only=True)["netad"]
    frame = pd.read_csv(runs["csv"])
    rows, labels = frame.drop(columns=["label"]), frame["label"].to_numpy()
    # the same network (calibration comes after training): the logits agree, the probability is sigmoid(logit / T)
    enc = raw.preprocessor.encode(rows[raw.columns])
    logits = raw.logits_encoded(enc).detach()
    np.testing.assert_array_equal(cal.logits_encoded(enc).detach().numpy(), logits.numpy())
    t = float(saved["calibration"]["tensors"]["temperature"])
    np.testing.assert_allclose(cal.score(rows), torch.sigmoid(logits.double() / t).numpy(), rtol=1e-6)
    # the ranking is the logits' (float32 scores near 1 can tie, before calibration more than after)
    scores = cal.score(rows)
    assert (np.diff(scores[np.argsort(logits.numpy(), kind="stable")]) >= 0).all()
    assert roc_auc_score(labels, scores) == pytest.approx(roc_auc_score(labels, logits.numpy()), abs=1e-4)
    # the threshold: chosen again on the calibrated validation scores, so the same rows are flagged
    val_features, val_labels = training_rows(open_model(runs["temperature"]))["validation"]
    assert cal.threshold == pytest.approx(choose_threshold(cal.score(val_features), val_labels))
    # the same rows flagged, but for rows at a threshold: a row's float32 score there is a validation row's score
    # recomputed in another batch, which can differ in its last bit (a machine's matrix kernels decide), and a
    # calibrated float32 score near 0.5 pins its logit down to about T * 2.4e-7
    at_threshold = np.zeros(len(rows), dtype=bool)
    for threshold, temperature in ((raw.threshold, 1.0), (cal.threshold, t)):
        margin = temperature * 5e-7
        at_threshold |= np.abs(logits.numpy() - temperature * np.log(threshold / (1 - threshold))) < margin
    assert at_threshold.sum() <= 5
    same = (cal.score(rows) >= cal.threshold) == (raw.score(rows) >= raw.threshold)
    assert same[~at_threshold].all()
    ece = saved["calibration"]["validation_ece"]
    assert ece["after"] == pytest.approx(expected_calibration_error(cal.score(val_features), val_labels), abs=1e-6)


def test_isotonic_survives_export_and_refuses_onnx_in_one_line(runs, tmp_path, capsys):
    from netad.export.artifact import export_checkpoint

    folder = export_checkpoint(runs["isotonic"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["calibration"]["method"] == "isotonic" and "tensors" not in config["calibration"]
    rows = pd.read_csv(runs["csv"]).drop(columns=["label"])
    np.testing.assert_array_equal(NetadPredictor.from_pretrained(folder).score(rows),
                                  NetadPredictor.from_checkpoint(runs["isotonic"]).score(rows))
    assert "## Calibration" in (folder / "README.md").read_text()
    code, _, err = cli(upload_main, capsys, "--checkpoint", str(runs["isotonic"]), "--output", str(tmp_path / "o"),
                       "--onnx", "--dry-run", "--repo-id", "alice/iso")
    assert_one_line_error(code, err, "isotonic", "--onnx")


def test_a_crafted_calibration_is_refused_at_load(runs, tmp_path):
    from netad.export.artifact import export_checkpoint
    from safetensors.torch import load_file, save_file

    folder = export_checkpoint(runs["temperature"], tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    weights["calibration.temperature"] = torch.tensor([-1.0], dtype=torch.float64)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(OSError, match="temperature is missing or not a positive number"):
        NetadPredictor.from_pretrained(folder)


def test_assess_draws_the_curve_before_and_after_and_states_the_error(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    code, _, err = cli(assess_main, capsys, "--checkpoint", str(runs["temperature"]), "--output", str(out),
                       "--no-log", "--bootstrap", "0")
    assert code == 0, err
    info = json.loads((out / "metrics.json").read_text())["info"]["Calibration"]
    assert info.startswith("temperature, fitted on the validation rows") and "before calibration" in info
    code, _, err = cli(assess_main, capsys, "--checkpoint", str(runs["none"]), "--output", str(tmp_path / "r2"),
                       "--no-log", "--bootstrap", "0")
    assert code == 0, err
    assert json.loads((tmp_path / "r2" / "metrics.json").read_text())["info"]["Calibration"].startswith("none;")
