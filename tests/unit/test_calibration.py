"""Calibration: the expected calibration error, temperature scaling and isotonic regression fitted on
validation-like rows, and the states a checkpoint or config.json may hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from netad.config import load_config
from netad.metrics import expected_calibration_error
from netad.models.calibration import Calibration, calibration_problem, fit_calibration


def overconfident(n=4000, seed=0, factor=4.0):
    """Labels drawn with probability sigmoid(z), and a model whose logits are ``factor * z``: right ranking,
    probabilities too close to 0 and 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return factor * z, y


def test_expected_calibration_error_by_hand():
    scores = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95])
    labels = np.array([0, 0, 1, 1, 1, 1, 0])
    # bins: [0, .1): 1 row, mean .05, rate 0; [.1, .2): 2 rows, mean .15, rate .5; [.9, 1]: 4 rows, mean .95, rate .75
    expected = (1 * 0.05 + 2 * 0.35 + 4 * 0.20) / 7
    assert expected_calibration_error(scores, labels) == pytest.approx(expected)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_temperature_keeps_the_ranking_and_lowers_the_calibration_error():
    logits, y = overconfident()
    state = fit_calibration("temperature", logits, y)
    t = float(state["tensors"]["temperature"])
    assert t == pytest.approx(4.0, rel=0.15)  # it undoes the overconfidence
    raw = torch.sigmoid(torch.tensor(logits, dtype=torch.float32)).numpy()
    calibrated = Calibration(state)(torch.tensor(logits, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(calibrated, 1 / (1 + np.exp(-logits / t)), rtol=1e-6)
    # the ranking is the logits': scores never out of their order, and the same ROC AUC up to float32 ties
    assert (np.diff(calibrated[np.argsort(logits)]) >= 0).all()
    assert roc_auc_score(y, calibrated) == pytest.approx(roc_auc_score(y, logits), abs=1e-6)
    assert roc_auc_score(y, raw) == pytest.approx(roc_auc_score(y, logits), abs=1e-6)
    fresh_logits, fresh_y = overconfident(seed=1)  # and on rows it was not fitted on
    before = expected_calibration_error(torch.sigmoid(torch.tensor(fresh_logits)).numpy(), fresh_y)
    after = expected_calibration_error(Calibration(state)(torch.tensor(fresh_logits)).numpy(), fresh_y)
    assert before > 0.08 and after < before / 3


def test_isotonic_lowers_the_calibration_error_and_is_its_piecewise_linear_map():
    logits, y = overconfident()
    state = fit_calibration("isotonic", logits, y)
    x, v = state["tensors"]["x"].numpy(), state["tensors"]["y"].numpy()
    assert (np.diff(x) > 0).all() and (np.diff(v) >= 0).all()
    fresh_logits, fresh_y = overconfident(seed=1)
    p = 1 / (1 + np.exp(-fresh_logits))
    calibrated = Calibration(state)(torch.tensor(fresh_logits)).numpy()
    np.testing.assert_allclose(calibrated, np.interp(p, x, v), atol=1e-6)
    assert expected_calibration_error(calibrated, fresh_y) < expected_calibration_error(p, fresh_y) / 2
    assert calibration_problem(state) is None


@pytest.mark.parametrize("state, needle", [
    ({"method": "platt", "tensors": {}}, "not one of"),
    ({"method": "temperature", "tensors": {"temperature": torch.tensor([0.0])}}, "positive"),
    ({"method": "temperature", "tensors": {"temperature": torch.tensor([float("nan")])}}, "positive"),
    ({"method": "isotonic", "tensors": {"x": torch.tensor([0.2, 0.1]), "y": torch.tensor([0.1, 0.2])}}, "increasing"),
    ({"method": "isotonic", "tensors": {"x": torch.tensor([0.1, 0.2]), "y": torch.tensor([0.5, 1.5])}}, "[0, 1]"),
    ({"method": "isotonic", "tensors": {"x": torch.tensor([0.1, 0.2]), "y": torch.tensor([0.5])}}, "equal length"),
])
def test_unusable_calibration_states_are_named(state, needle):
    assert needle in calibration_problem(state)


def test_a_hybrid_cannot_be_calibrated():
    with pytest.raises(Exception, match="a hybrid's score is not one"):
        load_config(None, ["model.type=hybrid", "calibration=temperature"])
    assert load_config(None, ["calibration=isotonic"]).calibration == "isotonic"
