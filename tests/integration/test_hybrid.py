"""model.type: hybrid: the classifier OR a novelty detector, trained, saved, loaded and tested like the classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import fast_config, make_frame
from netad.cli import test_main as run_test_main
from netad.evaluation.evaluate import evaluate_checkpoint
from netad.inference import NetadPredictor
from netad.models.novelty import combine
from netad.training.cv import run_cv, run_single


def novel_attacks(n: int = 60, seed: int = 11):
    """Anomalies unlike anything in training: ordinary packet sizes (the classifier's signal), wild timing and volume."""
    frame = make_frame(n=n, signal=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    frame["inter_arrival_time"] = rng.normal(60, 5, n)
    frame["bytes"] = rng.lognormal(12, 0.5, n).round()
    frame["label"] = 1.0
    return frame


def hybrid_config(tmp_path, csv_path, detector="pca", **extra):
    # the fixture's rows span only 6 directions of its 8 features: PCA keeping 95 % of the variance keeps
    # them all and has no error left to rank rows by (see the degenerate test); keeping half leaves some
    params = {"hybrid__params": "{epochs: 5}"} if detector in ("ae", "vae") else \
        {"hybrid__params": "{variance: 0.5}"} if detector == "pca" else {}
    params.update(extra.pop("params", {}))
    return fast_config(tmp_path, csv_path, model__type="hybrid", hybrid__detector=detector,
                       hybrid__novelty_fpr="0.1", training__num_epochs="15", **params, **extra)


@pytest.mark.parametrize("detector", ["pca", "kmeans", "ae"])
def test_hybrid_flags_novel_traffic_the_classifier_misses(tmp_path, csv_path, detector):
    cfg = hybrid_config(tmp_path, csv_path, detector)
    run_single(cfg, run_name="h", quiet=True)
    path = tmp_path / "checkpoints" / "best_model.ckpt"
    ckpt = torch.load(path, weights_only=True)  # still a weights-only checkpoint
    assert ckpt["netad"]["novelty"]["kind"] == detector
    model = NetadPredictor.from_checkpoint(path)
    assert model.novelty is not None and model.config["model_type"] == "hybrid"

    pre = model.preprocessor
    novel = novel_attacks()
    x = torch.from_numpy(pre.transform(novel.drop(columns=["label"])))
    with torch.no_grad():
        hybrid = model.score_features(x).numpy()
        p = torch.sigmoid(model.net(x)).numpy()
        z = model.novelty(x).numpy()
    t, t_n = model.threshold, float(model.novelty.threshold)
    # the rule: flagged when either part reaches its threshold, as one score at the classifier's threshold
    np.testing.assert_allclose(hybrid, combine(torch.from_numpy(p), torch.from_numpy(z), t, model.novelty.threshold),
                               rtol=1e-6)
    # raw rows through the serving path: the same rule, each part within float rounding of the above
    served, novelty = model.score_with_novelty(novel.drop(columns=["label"]))
    np.testing.assert_allclose(served, hybrid, rtol=0, atol=1e-6)
    np.testing.assert_allclose(novelty, z, rtol=0, atol=1e-5)
    assert ((hybrid >= t) == ((p >= t) | (z >= t_n))).all()
    assert np.mean(hybrid >= t) >= 0.95, "novel attacks must be flagged by the novelty part"
    assert np.mean(p >= t) < 0.5, "the fixture's novel attacks should fool the classifier alone"

    # the novelty threshold sits on the normal validation rows at the configured budget
    from netad.evaluation.evaluate import open_model, training_rows

    mut = open_model(path)
    val_features, val_labels = training_rows(mut)["validation"]
    xv = torch.from_numpy(pre.transform(val_features))
    with torch.no_grad():
        zv = model.novelty(xv).numpy()[val_labels == 0]
    flagged = np.mean(zv >= t_n)  # at most the budget, and within one row of it
    assert 0.1 - 1.0 / len(zv) - 1e-9 <= flagged <= 0.1 + 1e-9


def test_hybrid_tests_and_cross_validates_like_the_classifier(tmp_path, csv_path, capsys):
    cfg = hybrid_config(tmp_path, csv_path)
    result = run_cv(cfg, run_name="hcv", quiet=True)
    for fold in range(3):
        assert NetadPredictor.from_checkpoint(result.run_dir / f"fold_{fold}" / "best.ckpt").novelty is not None
    best = tmp_path / "checkpoints" / "best_model.ckpt"
    assert NetadPredictor.from_checkpoint(best).novelty is not None
    # test.py on data with novel attacks: the hybrid's recall comes from the novelty part
    mixed = tmp_path / "novel.csv"
    frame = make_frame(n=120, seed=4)
    frame = frame[frame["label"] == 0]
    import pandas as pd

    pd.concat([frame, novel_attacks()]).to_csv(mixed, index=False)
    res = evaluate_checkpoint(best, mixed, n_bootstrap=0)
    assert res.metrics["recall"] >= 0.95
    capsys.readouterr()
    code = run_test_main(["--checkpoint", str(best), "--data", str(mixed), "--no-log", "--bootstrap", "0",
                          "--results", str(tmp_path / "r.csv")])
    out = capsys.readouterr().out
    assert code == 0 and f"{res.metrics['recall']:.4f}" in out
    assert f"({best}), hybrid: classifier or pca novelty" in out
    # the CV table measured the hybrid's scores on each fold's held-out rows
    fold0 = NetadPredictor.from_checkpoint(result.run_dir / "fold_0" / "best.ckpt")
    assert result.folds[0]["threshold"] == pytest.approx(fold0.threshold)


def test_a_novelty_detector_that_cannot_rank_normal_rows_says_so_and_stays_in_budget(tmp_path, csv_path, caplog):
    """PCA keeping every direction the training rows span: each normal row's error is rounding noise, which
    differs between CPUs. It must score 0 on every CPU, flag no normal row, say so, and still catch rows off
    the training rows' span."""
    import logging
    import json

    from netad.training import fit as fit_module
    from netad.export.artifact import export_checkpoint

    fit_module._already_warned.clear()
    cfg = hybrid_config(tmp_path, csv_path, "pca", params={"hybrid__params": "{variance: 0.95}"})
    with caplog.at_level(logging.WARNING, logger="netad"):
        run_single(cfg, run_name="degenerate", quiet=False)
    assert any("cannot rank normal traffic" in r.getMessage() for r in caplog.records)
    path = tmp_path / "checkpoints" / "best_model.ckpt"
    model = NetadPredictor.from_checkpoint(path)
    assert "cannot rank normal traffic" in model.config["novelty"]["degenerate"]

    from netad.evaluation.evaluate import open_model, training_rows

    pre = model.preprocessor
    val_features, val_labels = training_rows(open_model(path))["validation"]
    with torch.no_grad():
        zv = model.novelty(torch.from_numpy(pre.transform(val_features))).numpy()[val_labels == 0]
        # rows off the span of the training rows: a protocol never seen in training (the unknown bucket)
        novel = novel_attacks().drop(columns=["label"]).assign(protocol="gre")
        z_novel = model.novelty(torch.from_numpy(pre.transform(novel))).numpy()
    assert (zv == 0).all()  # exactly: the noise is gone, whatever the CPU
    assert np.mean(zv >= float(model.novelty.threshold)) == 0.0  # within the 0.1 budget: flags none
    assert np.mean(z_novel >= float(model.novelty.threshold)) >= 0.95

    card = (export_checkpoint(path, tmp_path / "export") / "README.md").read_text()
    assert "cannot rank normal traffic" in card
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["novelty"]["noise_floor"] > 0
