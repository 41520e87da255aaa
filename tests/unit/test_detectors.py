"""Contract tests: every detector, and the adapter of a trained classifier, keeps the same promises."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from netad.detectors import DETECTORS, BaseDetector, NotFittedError, load_detector, make_detector
from netad.errors import UserError

# small and quick: the contract, not the accuracy, is under test here
FAST = {"ae": {"epochs": 30, "batch_size": 64}, "vae": {"epochs": 30, "batch_size": 64},
        "classifier": {}, "kmeans": {"n_clusters": (3, 5, 8)}}
ALL = list(DETECTORS) + ["classifier"]


def planted(seed: int = 0, n_normal: int = 300, n_outlier: int = 30, dim: int = 6):
    """Normal rows from two Gaussian blobs; outliers scattered far outside them."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0] * dim, [3.0] * dim])
    normal = centers[rng.integers(0, 2, n_normal)] + rng.normal(0, 0.6, (n_normal, dim))
    outlier = rng.uniform(-6, 9, (n_outlier, dim))
    outlier[:, 0] = rng.choice([-7.0, 10.0], n_outlier)  # far on at least one axis
    return normal, outlier


def data(seed: int = 0):
    """Training rows with labels (outliers labelled 1; unsupervised detectors use the normal rows
    only) and a separate test set from the same process."""
    n_tr, o_tr = planted(seed)
    n_te, o_te = planted(seed + 100, n_normal=200, n_outlier=40)
    X = np.vstack([n_tr, o_tr])
    y = np.r_[np.zeros(len(n_tr)), np.ones(len(o_tr))].astype(int)
    X_test = np.vstack([n_te, o_te])
    y_test = np.r_[np.zeros(len(n_te)), np.ones(len(o_te))].astype(int)
    return X, y, X_test, y_test


@functools.lru_cache(maxsize=None)
def trained_predictor():
    """The classifier as train.py trains it (fit_split), on the seeded fixture, once per module. With
    ``data.scaler: none`` its preprocessed rows are the fixture's numbers, so every detector reads the same X."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from netad.config import load_config
    from netad.data.loading import load_table
    from netad.inference import NetadPredictor
    from netad.training.fit import fit_split

    X, y, _, _ = data()
    with tempfile.TemporaryDirectory(prefix="netad-test-classifier-") as tmp:  # the predictor keeps what it needs
        work = Path(tmp)
        frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(label=y)
        frame.to_csv(work / "planted.csv", index=False)
        cfg = load_config(None, [f"data.data_path={work / 'planted.csv'}", "data.scaler=none",
                                 "model.hidden_dims=[16, 8]", "training.num_epochs=30", "training.batch_size=32",
                                 "training.early_stopping_patience=null", "model.dropout=0.0",
                                 "logging.use_wandb=false", "trainer.accelerator=cpu", "trainer.devices=1"])
        table = load_table(cfg.data)
        rows = np.random.default_rng(0).permutation(len(y))
        val = rows[::5]
        result = fit_split(cfg, table, np.setdiff1d(rows, val), val, work / "fit", name="classifier",
                           run_name="detectors", log=False, quiet=True)
        predictor = NetadPredictor.from_checkpoint(result.checkpoint)
    np.testing.assert_array_equal(predictor.preprocessor.transform(frame.drop(columns="label")),
                                  X.astype(np.float32))
    return predictor


def new(name: str, **extra) -> BaseDetector:
    params = dict(FAST.get(name, {}), **extra)
    if name == "classifier":
        params["predictor"] = trained_predictor()
    return make_detector(name, **params)


@pytest.fixture(scope="module")
def fitted():
    """Each detector fitted once on the seeded fixture (shared by the read-only checks)."""
    X, y, X_test, y_test = data()
    out = {}
    for name in ALL:
        det = new(name)
        returned = det.fit(X, y)
        out[name] = (det, returned)
    return out, (X, y, X_test, y_test)


@pytest.mark.parametrize("name", ALL)
def test_fit_returns_self_and_scores_have_one_value_per_row(fitted, name):
    dets, (X, y, X_test, _) = fitted
    det, returned = dets[name]
    assert returned is det
    scores = det.decision_function(X_test)
    assert scores.shape == (len(X_test),) and np.isfinite(scores).all()
    assert det.predict(X_test).tolist() == (scores >= det.threshold_).astype(int).tolist()


@pytest.mark.parametrize("name", ALL)
def test_planted_outliers_score_higher(fitted, name):
    dets, (_, _, X_test, y_test) = fitted
    auc = roc_auc_score(y_test, dets[name][0].decision_function(X_test))
    assert auc >= 0.8, f"{name}: ROC AUC {auc:.3f} on planted outliers"


@pytest.mark.parametrize("name", list(DETECTORS))
def test_scores_are_standardised_on_training_rows_and_threshold_is_a_percentile(fitted, name):
    dets, (X, y, _, _) = fitted
    det = dets[name][0]
    train = det.decision_function(X[y == 0])  # what it was fitted on: the normal rows only
    np.testing.assert_allclose(train, det.train_scores_, rtol=1e-6, atol=1e-6)
    assert abs(train.mean()) < 1e-6 and abs(train.std() - 1.0) < 1e-6
    assert np.mean(train >= det.threshold_) == pytest.approx(det.contamination, abs=0.02)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_unsupervised_fit_uses_the_normal_rows_only(fitted, name):
    dets, (X, y, X_test, _) = fitted
    alone = new(name).fit(X[y == 0])
    np.testing.assert_allclose(alone.decision_function(X_test), dets[name][0].decision_function(X_test), rtol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_unfitted_detector_raises_a_clear_error(name):
    det = new(name)
    with pytest.raises(NotFittedError, match="not fitted: call fit"):
        det.decision_function(np.zeros((3, 6)))
    with pytest.raises(NotFittedError):
        det.predict(np.zeros((3, 6)))


@pytest.mark.parametrize("name", ALL)
def test_save_and_load_give_identical_scores(fitted, name, tmp_path):
    dets, (_, _, X_test, _) = fitted
    det = dets[name][0]
    path = det.save(tmp_path / f"{name}.joblib")
    loaded = load_detector(path)
    assert type(loaded) is type(det) and loaded.threshold_ == det.threshold_
    np.testing.assert_array_equal(loaded.decision_function(X_test), det.decision_function(X_test))


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_scores(fitted, name):
    dets, (X, y, X_test, _) = fitted
    again = new(name).fit(X, y)
    np.testing.assert_allclose(again.decision_function(X_test), dets[name][0].decision_function(X_test),
                               rtol=1e-5, atol=1e-6)


def test_seed_changes_randomised_detectors():
    X, y, X_test, _ = data()
    for name in ("iforest", "ae"):
        a = new(name, random_state=1).fit(X, y).decision_function(X_test)
        b = new(name, random_state=2).fit(X, y).decision_function(X_test)
        assert not np.allclose(a, b), name


@pytest.mark.parametrize("name", ["iforest", "pca", "ae"])
def test_calibrate_chooses_the_threshold_on_validation_rows(fitted, name):
    dets, _ = fitted
    det = new(name).fit(*data()[:2])
    X_val, y_val = data(seed=7)[2:]
    det.calibrate(X_val, y_val, method="max_f1")
    from netad.metrics import choose_threshold

    assert det.threshold_ == choose_threshold(det.decision_function(X_val), y_val, "max_f1", upper=None)
    assert "validation" in det.threshold_source_
    normals = X_val[y_val == 0]
    det.calibrate(normals, np.zeros(len(normals)), target_fpr=0.05)  # normal rows only: an FPR budget
    assert np.mean(det.decision_function(normals) >= det.threshold_) <= 0.05 + 1e-9


def test_bad_input():
    det = new("pca")
    with pytest.raises(ValueError, match="2-d"):
        det.fit(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        det.fit(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="no normal rows"):
        det.fit(np.ones((4, 2)), np.ones(4))
    det.fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ValueError, match="expected 3 features"):
        det.decision_function(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        make_detector("nope")
    with pytest.raises(ValueError, match="scores a trained model"):
        make_detector("classifier").fit(np.zeros((10, 6)), np.zeros(10))
    with pytest.raises(ValueError, match="expected 6 features"):
        new("classifier").fit(np.zeros((10, 4)), np.zeros(10))
    with pytest.raises(ValueError, match="contamination"):
        make_detector("iforest", contamination=0.7)


def test_load_refuses_other_files(tmp_path):
    import joblib

    with pytest.raises(UserError, match="not found"):
        load_detector(tmp_path / "none.joblib")
    (tmp_path / "text.joblib").write_text("hello")
    with pytest.raises(UserError, match="not a netad detector"):
        load_detector(tmp_path / "text.joblib")
    joblib.dump({"format": 1, "detector": "a string"}, tmp_path / "other.joblib")
    with pytest.raises(UserError, match="not a netad detector"):
        load_detector(tmp_path / "other.joblib")


PORTABLE = [n for n in DETECTORS if DETECTORS[n].portable]


def test_portable_detectors_are_the_documented_ones():
    assert PORTABLE == ["pca", "kmeans", "ae", "vae"]


@pytest.mark.parametrize("name", PORTABLE)
def test_novelty_module_recomputes_the_detector_scores_from_weights_only_state(fitted, name, tmp_path):
    import torch

    from netad.models.novelty import scorer_from_state

    dets, (_, _, X_test, _) = fitted
    det = dets[name][0]
    torch.save({"novelty": det.novelty_state()}, tmp_path / "n.pt")
    state = torch.load(tmp_path / "n.pt", weights_only=True)["novelty"]  # no pickled code
    scorer = scorer_from_state(state)
    with torch.no_grad():
        z = scorer(torch.from_numpy(X_test.astype(np.float32))).numpy()
    np.testing.assert_allclose(z, det.decision_function(X_test.astype(np.float32)), rtol=1e-5, atol=1e-5)
    assert float(scorer.threshold) == det.threshold_


def test_other_detectors_refuse_export(fitted):
    dets, _ = fitted
    with pytest.raises(ValueError, match="cannot be stored in a checkpoint"):
        dets["iforest"][0].novelty_state()


def test_fpr_cut_flags_at_most_the_budget_even_with_ties():
    from netad.detectors.base import fpr_cut

    scores = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert fpr_cut(scores, 0.2) == 7.5  # 8 and 9 flagged: 2 of 10, the cut midway between 7 and 8
    assert np.sum(scores >= fpr_cut(scores, 0.05)) == 0
    tied = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 9, 9, 9])
    assert np.sum(tied >= fpr_cut(tied, 0.2)) == 0  # the three 9s would be 3 of 11: none flagged
    assert np.sum(tied >= fpr_cut(tied, 0.3)) == 3
    # rounding noise of another scoring route moves no row across the cut
    rng = np.random.default_rng(0)
    noisy = rng.normal(size=500)
    cut = fpr_cut(noisy, 0.05)
    for jitter in (1 - 1e-12, 1 + 1e-12):
        assert np.sum(noisy * jitter >= cut) == 25
    assert np.sum(np.zeros(20) >= fpr_cut(np.zeros(20), 0.1)) == 0
    assert np.sum(np.full(20, 1e3) * (1 + 1e-15) >= fpr_cut(np.full(20, 1e3), 0.1)) == 0


@pytest.mark.parametrize("t", [1e-8, 0.3, 0.999999, 1.0])
def test_hybrid_rule_holds_for_any_classifier_threshold(t):
    import torch

    from netad.models.novelty import combine

    rng = np.random.default_rng(0)
    p = torch.tensor(np.r_[rng.random(200), [0.0, 1.0, t, t]], dtype=torch.float32)
    z = torch.tensor(np.r_[rng.normal(0, 3, 200), [10.0, -10.0, 1.5, 1.5 - 1e-9]], dtype=torch.float64)
    t_n = torch.tensor(1.5, dtype=torch.float64)
    h = combine(p, z, float(np.float32(t)), t_n).numpy()
    t32 = float(np.float32(t))
    expected = (p.numpy() >= t32) | (z.numpy() >= 1.5)
    assert ((h >= t32) == expected).all()
    below = z.numpy() < 1.5
    assert (h[below] >= p.numpy()[below]).all()  # below the novelty cut it may lift the rank, never flag alone


def test_a_detector_whose_training_scores_all_tie_flags_none_of_them_and_says_so():
    from netad.detectors import make_detector

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 5))
    X = rng.normal(size=(200, 2)) @ basis  # rows that span 2 of 5 directions: PCA reconstructs them exactly
    with pytest.warns(UserWarning, match="cannot rank normal traffic"):
        det = make_detector("pca", variance=0.999).fit(X)
    assert "same score" in det.degenerate_
    assert det.predict(X).sum() == 0
    off_span = X[:5] + rng.normal(size=(5, 5))
    assert det.predict(off_span).all()
