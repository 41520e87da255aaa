"""Explanations: Captum attributions summed back to input columns, against a typical normal training row;
the novelty part's per-column shares; which part of a hybrid fired."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_frame
from netad.data.preprocessing import TabularPreprocessor, preprocessing_problem
from netad.errors import UserError
from netad.inference import NetadPredictor
from netad.inference.explain import Explainer, explanation_info
from netad.models.mlp import MLP

FEATURES = ["packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol"]


def fitted(frame=None):
    frame = make_frame(n=400, seed=3) if frame is None else frame
    pre = TabularPreprocessor(log_transform="auto").fit(frame[FEATURES])
    x = pre.transform(frame[FEATURES])
    pre.fit_baseline(x[frame["label"].to_numpy() == 0])
    return pre, frame


def predictor(pre, net, threshold=0.5, activation="relu"):
    config = {"format": "netad-model", "format_version": 1,
              "architecture": {"input_dim": pre.output_dim, "hidden_dims": [16, 8], "dropout": 0.0,
                               "activation": activation},
              "preprocessing": pre.state, "threshold": threshold, "data": {}}
    return NetadPredictor(config, {f"mlp.{k}": v for k, v in net.state_dict().items()})


def net_reading(pre, keep, activation="relu", seed=0):
    """A random network whose first layer reads only the features ``keep(name)`` selects."""
    torch.manual_seed(seed)
    net = MLP(pre.output_dim, [16, 8], 0.0, activation)
    mask = torch.tensor([keep(name) for name in pre.state["feature_names"]], dtype=torch.float32)
    with torch.no_grad():
        net.net[0].weight.mul_(mask)
        net.net[0].weight.add_(mask * 0.5)  # and reads them strongly
    return net


@pytest.mark.parametrize("method", ["deeplift", "integrated_gradients"])
def test_a_model_that_reads_one_column_puts_everything_on_it(method):
    pre, frame = fitted()
    model = predictor(pre, net_reading(pre, lambda name: name == "packet_size"))
    e = Explainer(model, method).explain_encoded(pre.encode(frame[FEATURES]))
    assert e.columns == ["packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol"]
    others = np.abs(e.contributions[:, 1:]).max()
    assert others == 0.0  # a feature the network never reads gets no attribution, by either method
    moved = np.abs(e.contributions[:, 0]) > 1e-3
    assert moved.mean() > 0.5
    idx, _ = e.top(1)
    assert (idx[moved, 0] == 0).all()


def test_one_hot_blocks_sum_back_to_their_column():
    pre, frame = fitted()
    model = predictor(pre, net_reading(pre, lambda name: name.startswith("protocol=")))
    explainer = Explainer(model)
    enc = pre.encode(frame[FEATURES])
    e = explainer.explain_encoded(enc)
    assert np.abs(e.contributions[:, :4]).max() == 0.0
    # the column's contribution is the sum over its one-hot block, and the block's features add up to the logit's move
    x = torch.from_numpy(pre.to_matrix(enc))
    with torch.no_grad():
        moved = model.net(x) - model.net(explainer.baseline)
    np.testing.assert_allclose(e.contributions[:, 4], moved.numpy(), atol=1e-4)
    changed = frame["protocol"].to_numpy() != frame["protocol"].mode()[0]
    assert changed.any() and (np.abs(e.contributions[changed, 4]) > 0).any()
    assert np.abs(e.contributions[~changed, 4]).max() < 1e-5  # the baseline's own category moves nothing


def test_deeplift_contributions_add_up_to_the_logit_move_on_a_full_network():
    pre, frame = fitted()
    model = predictor(pre, net_reading(pre, lambda name: True, seed=4))
    explainer = Explainer(model)
    enc = pre.encode(frame[FEATURES])
    e = explainer.explain_encoded(enc)
    with torch.no_grad():
        moved = (model.logits_encoded(enc) - model.net(explainer.baseline)).numpy()
    np.testing.assert_allclose(e.contributions.sum(axis=1), moved, atol=1e-4)
    assert np.abs(e.delta).max() < 1e-4
    assert explainer.method == "deeplift" and explanation_info(model)["method"] == "deeplift"


def test_networks_without_a_deeplift_rule_use_integrated_gradients():
    pre, _ = fitted()
    model = predictor(pre, net_reading(pre, lambda name: True, activation="gelu"), activation="gelu")
    assert Explainer(model).method == "integrated_gradients"
    assert explanation_info(model)["method"] == "integrated_gradients"


def test_the_baseline_is_a_typical_normal_row():
    frame = make_frame(n=400, seed=3)
    frame.loc[frame["label"] == 0, "protocol"] = "udp"  # every normal row
    frame.loc[frame.index[frame["label"] == 1][:3], "protocol"] = "tcp"
    pre, _ = fitted(frame)
    base = np.array(pre.state["baseline"])
    names = pre.state["feature_names"]
    normal = pre.transform(frame[FEATURES][frame["label"] == 0])
    assert base[names.index("packet_size")] == pytest.approx(np.median(normal[:, names.index("packet_size")]))
    block = [i for i, n in enumerate(names) if n.startswith("protocol=")]
    assert base[block].tolist().count(1.0) == 1 and base[names.index("protocol=udp")] == 1.0
    assert preprocessing_problem(pre.state) is None
    broken = dict(pre.state, baseline=pre.state["baseline"][:-1])
    assert "baseline" in preprocessing_problem(broken)


def test_a_model_without_a_baseline_says_how_to_get_one():
    pre, _ = fitted()
    state = {k: v for k, v in pre.state.items() if k != "baseline"}
    model = predictor(TabularPreprocessor.from_state(state), net_reading(pre, lambda name: True))
    assert explanation_info(model) is None
    with pytest.raises(UserError, match="train it again"):
        Explainer(model)


def test_global_importance_ranks_the_one_column_a_model_reads_first():
    from netad.evaluation.importance import global_importance, importance_over_folds

    pre, frame = fitted()
    model = predictor(pre, net_reading(pre, lambda name: name == "packet_size"))
    found = global_importance(model, frame[FEATURES], frame["label"].to_numpy(), repeats=2)
    rows = {r["column"]: r for r in found["columns"]}
    assert found["columns"][0]["column"] == "packet_size" and found["rows"] == len(frame)
    # the fixture's signal column: shuffling it takes the ROC AUC to about 0.5 (this random network may rank it
    # backwards, AUC < 0.5, so the shuffle may raise it)
    assert abs(rows["packet_size"]["permutation_auroc_drop"]) > 0.05
    for name in ("inter_arrival_time", "bytes", "is_tcp", "protocol"):  # never read: shuffling changes no score
        assert rows[name]["mean_abs_attribution"] == 0.0 and rows[name]["permutation_auroc_drop"] == 0.0
    both = importance_over_folds([found, found])
    assert both["n_folds"] == 2 and both["columns"][0]["column"] == "packet_size"
    assert both["columns"][0]["mean_abs_attribution"] == pytest.approx(rows["packet_size"]["mean_abs_attribution"])
    assert both["columns"][0]["folds"] == {"fold_0": rows["packet_size"]["mean_abs_attribution"],
                                           "fold_1": rows["packet_size"]["mean_abs_attribution"]}


def test_each_one_hot_block_is_its_own_column():
    frame = make_frame(n=400, seed=3)
    frame["service"] = np.random.default_rng(1).choice(["http", "dns", "ftp", "ssh"], len(frame))
    features = FEATURES + ["service"]
    pre = TabularPreprocessor(log_transform="auto").fit(frame[features])
    pre.fit_baseline(pre.transform(frame[features])[frame["label"].to_numpy() == 0])
    model = predictor(pre, net_reading(pre, lambda name: name.startswith("service=")))
    e = Explainer(model).explain_encoded(pre.encode(frame[features]))
    assert e.columns == ["packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol", "service"]
    assert np.abs(e.contributions[:, :5]).max() == 0.0 and np.abs(e.contributions[:, 5]).max() > 0


def test_a_boolean_baseline_is_a_value_a_row_can_hold():
    frame = make_frame(n=40, seed=3)
    frame["is_tcp"] = [True, False] * 20  # an even split: the median would be 0.5
    pre, _ = fitted(frame)
    assert pre.state["baseline"][pre.state["feature_names"].index("is_tcp")] in (0.0, 1.0)


@pytest.mark.parametrize("value", [10 ** 400, 1e300, float("inf")])
def test_a_baseline_value_past_float32_is_named(value):
    pre, _ = fitted()
    broken = dict(pre.state, baseline=[value] + pre.state["baseline"][1:])
    assert "one float32 number per feature" in preprocessing_problem(broken)
