"""The metrics module against scikit-learn / numpy on seeded data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from netad.metrics import (
    METRIC_NAMES,
    choose_threshold,
    compute_metrics,
    false_positive_rate,
    auroc_vs_chance,
    summarize,
)


def scored(n: int = 400, separation: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping probability-like scores (float32, in [0, 1]) and 0/1 targets."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = np.clip(rng.normal(0.4 + separation * y, 0.15), 0.0, 1.0).astype(np.float32)
    return s, y


def sklearn_metrics(s: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (s >= threshold).astype(int)  # the package's rule: flagged at or above the cut
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "auroc": skm.roc_auc_score(y, s),
        "auprc": skm.average_precision_score(y, s),
    }


# ------------------------------------------------------------------ compute_metrics


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_compute_metrics_matches_sklearn(threshold):
    s, y = scored()
    ours = compute_metrics(s, y, threshold)
    assert list(ours) == list(METRIC_NAMES)
    theirs = sklearn_metrics(s, y, threshold)
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-5), name


def test_compute_metrics_flags_scores_equal_to_threshold():
    s, y = scored(seed=1)
    # a cut that is exactly one of the scores: that row must be flagged (score >= threshold)
    for threshold in (float(s[y == 1][0]), float(np.median(s)), choose_threshold(s, y, "max_f1")):
        ours = compute_metrics(s, y, threshold)
        theirs = sklearn_metrics(s, y, threshold)
        for name in ("accuracy", "precision", "recall", "f1"):
            assert ours[name] == pytest.approx(theirs[name], abs=1e-5), (threshold, name)


def test_compute_metrics_prefix():
    s, y = scored()
    out = compute_metrics(s, y, 0.5, prefix="val")
    assert set(out) == {f"val/{m}" for m in METRIC_NAMES}
    assert out["val/auroc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-5)


@pytest.mark.parametrize("cls", [0, 1])
def test_compute_metrics_one_class_gives_nan_auc(cls):
    s, _ = scored(n=50)
    y = np.full(50, cls)
    out = compute_metrics(s, y, 0.5)
    assert math.isnan(out["auroc"]) and math.isnan(out["auprc"])
    pred = s >= 0.5
    assert out["accuracy"] == pytest.approx(np.mean(pred == cls), abs=1e-6)


# ------------------------------------------------------------------ thresholds


def test_max_f1_threshold_attains_max_f1():
    s, y = scored(seed=2)
    t = choose_threshold(s, y, "max_f1")
    precision, recall, _ = skm.precision_recall_curve(y, s)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0)
    assert skm.f1_score(y, s >= t) == pytest.approx(f1.max(), abs=1e-9)
    assert t in set(s.astype(np.float64).tolist())
    # and compute_metrics reports that same F1 at the chosen cut
    assert compute_metrics(s, y, t)["f1"] == pytest.approx(f1.max(), abs=1e-5)


@pytest.mark.parametrize("target_fpr", [0.01, 0.05, 0.2])
def test_target_fpr_threshold_is_lowest_cut_within_budget(target_fpr):
    s, y = scored(seed=3)
    t = choose_threshold(s, y, "target_fpr", target_fpr=target_fpr)
    fpr = false_positive_rate(s, y, t)
    assert fpr <= target_fpr
    # brute force: the lowest unique score whose FPR stays within the budget
    ok = [u for u in np.unique(s.astype(np.float64)) if np.mean(s[y == 0] >= u) <= target_fpr]
    assert t == pytest.approx(min(ok))
    lower = np.unique(s)[np.unique(s) < t]
    if lower.size:
        assert false_positive_rate(s, y, float(lower.max())) > target_fpr


def test_target_fpr_at_005_on_fixture():
    s, y = scored()
    t = choose_threshold(s, y, "target_fpr", target_fpr=0.05)
    assert false_positive_rate(s, y, t) <= 0.05
    assert 0.0 <= t <= 1.0


@pytest.mark.parametrize("method", ["max_f1", "target_fpr"])
def test_single_class_threshold_falls_back(method):
    s, _ = scored(n=30)
    assert choose_threshold(s, np.zeros(30, dtype=int), method) == 0.5
    assert choose_threshold(s, np.ones(30, dtype=int), method) == 0.5


def test_unknown_threshold_method():
    s, y = scored(n=30)
    with pytest.raises(ValueError):
        choose_threshold(s, y, "median")


# ------------------------------------------------------------------ permutation test


def test_chance_observed_equals_sklearn():
    s, y = scored(seed=4)
    assert auroc_vs_chance(s, y)["observed"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-9)


def test_chance_observed_with_ties():
    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.4).astype(int)
    s = np.round(rng.random(300) * 0.5 + 0.3 * y, 1)  # heavily tied scores
    assert len(np.unique(s)) < 12
    assert auroc_vs_chance(s, y)["observed"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-9)


def test_chance_random_scores_not_significant():
    rng = np.random.default_rng(6)
    y = (rng.random(500) < 0.3).astype(int)
    s = rng.random(500)
    out = auroc_vs_chance(s, y)
    assert out["p_value"] > 0.05
    assert out["mean"] == 0.5 and 0.0 < out["std"] < 0.1


def test_chance_p_value_matches_a_real_permutation_test():
    """The analytic test agrees with shuffling the labels for real."""
    rng = np.random.default_rng(11)
    y = (rng.random(400) < 0.25).astype(int)
    s = rng.random(400) + 0.15 * y
    out = auroc_vs_chance(s, y)
    null = np.array([skm.roc_auc_score(rng.permutation(y), s) for _ in range(2000)])
    assert out["p_value"] == pytest.approx(np.mean(null >= out["observed"]), abs=0.01)
    assert out["std"] == pytest.approx(null.std(), rel=0.1)


def test_chance_separating_scores_significant():
    s, y = scored(separation=0.5, seed=7)
    out = auroc_vs_chance(s, y)
    assert out["observed"] > 0.95
    assert out["p_value"] < 1e-6


def test_chance_one_class_is_undefined():
    out = auroc_vs_chance(np.random.default_rng(1).random(10), np.zeros(10))
    assert math.isnan(out["p_value"]) and math.isnan(out["observed"])


# ------------------------------------------------------------------ summarize / FPR


def test_summarize_against_numpy():
    rng = np.random.default_rng(9)
    values = rng.random((5, 2))
    rows = [{"auroc": a, "f1": f, "fold": i} for i, (a, f) in enumerate(values)]
    out = summarize(rows, ["auroc", "f1"])
    for j, key in enumerate(["auroc", "f1"]):
        col = values[:, j]
        assert out[key]["mean"] == pytest.approx(col.mean())
        assert out[key]["std"] == pytest.approx(col.std(ddof=1))
        assert out[key]["min"] == pytest.approx(col.min())
        assert out[key]["max"] == pytest.approx(col.max())


def test_summarize_ignores_nan_and_infers_keys():
    rows = [{"auroc": 0.7}, {"auroc": math.nan}, {"auroc": 0.9}, {"auroc": 0.8}]
    out = summarize(rows)
    finite = np.array([0.7, 0.9, 0.8])
    assert set(out) == {"auroc"}
    assert out["auroc"]["mean"] == pytest.approx(finite.mean())
    assert out["auroc"]["std"] == pytest.approx(finite.std(ddof=1))
    assert out["auroc"]["min"] == pytest.approx(0.7) and out["auroc"]["max"] == pytest.approx(0.9)


def test_summarize_edge_cases():
    single = summarize([{"f1": 0.4}, {"f1": math.nan}])
    assert single["f1"]["mean"] == pytest.approx(0.4) and single["f1"]["std"] == 0.0
    empty = summarize([{"f1": math.nan}, {"f1": math.nan}])
    assert all(math.isnan(v) for v in empty["f1"].values())


def test_false_positive_rate_hand_count():
    scores = np.array([0.1, 0.5, 0.7, 0.9, 0.2, 0.5, 0.95])
    target = np.array([0, 0, 0, 0, 1, 1, 1])
    # negatives: 0.1, 0.5, 0.7, 0.9 -> at threshold 0.5, three are flagged (0.5 counts)
    assert false_positive_rate(scores, target, 0.5) == pytest.approx(3 / 4)
    assert false_positive_rate(scores, target, 0.8) == pytest.approx(1 / 4)
    assert false_positive_rate(scores, target, 0.99) == 0.0
    assert math.isnan(false_positive_rate(scores[4:], target[4:], 0.5))


# ------------------------------------------------- evaluation helpers (test.py, assess)


@pytest.mark.parametrize("threshold", [0.35, 0.5])
def test_held_out_metrics_and_confusion_match_sklearn(threshold):
    from netad.metrics import TABLE_METRICS, confusion_counts, held_out_metrics

    s, y = scored(seed=3)
    ours = held_out_metrics(s, y, threshold)
    assert list(ours) == TABLE_METRICS
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert confusion_counts(s, y, threshold) == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert ours["fpr"] == pytest.approx(fp / (fp + tn))
    for name, value in sklearn_metrics(s, y, threshold).items():
        assert ours[name] == pytest.approx(value, abs=1e-5), name


def test_bootstrap_ci_equals_sklearn_over_the_same_resamples():
    import torch

    from netad.metrics import bootstrap_ci

    s, y = scored(n=300, seed=4)
    threshold = 0.5
    ci = bootstrap_ci(s, y, threshold, n_resamples=200, seed=11)
    # the same resamples (torch generator, same seed), scored by scikit-learn
    gen = torch.Generator().manual_seed(11)
    ref = {"f1": [], "auroc": [], "auprc": []}
    for _ in range(200):
        idx = torch.randint(0, len(y), (len(y),), generator=gen).numpy()
        t, p = y[idx], s[idx]
        ref["f1"].append(skm.f1_score(t, (p >= threshold).astype(int), zero_division=0))
        ref["auroc"].append(skm.roc_auc_score(t, p))
        ref["auprc"].append(skm.average_precision_score(t, p))
    for name, values in ref.items():
        low, high = np.quantile(values, [0.025, 0.975])
        assert ci[name]["low"] == pytest.approx(low, abs=1e-5), name
        assert ci[name]["high"] == pytest.approx(high, abs=1e-5), name
        assert ci[name]["n_used"] == 200
    # the point estimate lies inside its interval, and the interval narrows with more rows
    point = sklearn_metrics(s, y, threshold)
    for name in ref:
        assert ci[name]["low"] <= point[name] <= ci[name]["high"], name
    s_big, y_big = scored(n=3000, seed=4)
    big = bootstrap_ci(s_big, y_big, threshold, n_resamples=200, seed=11)
    assert big["auroc"]["high"] - big["auroc"]["low"] < ci["auroc"]["high"] - ci["auroc"]["low"]


def test_bootstrap_ci_is_seeded_and_skips_one_class_resamples():
    from netad.metrics import bootstrap_ci

    s, y = scored(n=200, seed=5)
    assert bootstrap_ci(s, y, 0.5, 100, seed=1) == bootstrap_ci(s, y, 0.5, 100, seed=1)
    assert bootstrap_ci(s, y, 0.5, 100, seed=1) != bootstrap_ci(s, y, 0.5, 100, seed=2)
    # one anomaly in 40 rows: many resamples miss it, so AUROC counts fewer resamples than F1
    y_rare = np.zeros(40, dtype=int)
    y_rare[7] = 1
    rare = bootstrap_ci(s[:40], y_rare, 0.5, 200, seed=0)
    assert rare["f1"]["n_used"] == 200 and 0 < rare["auroc"]["n_used"] < 200
    only_normal = bootstrap_ci(s[:40], np.zeros(40, dtype=int), 0.5, 50)
    assert only_normal["auroc"]["n_used"] == 0 and math.isnan(only_normal["auroc"]["low"])


def test_curves_sweep_and_calibration_match_sklearn():
    from sklearn.calibration import calibration_curve

    from netad.metrics import majority_accuracy, pr_points, reliability, roc_points, threshold_sweep

    s, y = scored(seed=6)
    fpr, tpr = roc_points(s, y)
    ref_fpr, ref_tpr, _ = skm.roc_curve(y, s)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    recall, precision = pr_points(s, y)
    ref_p, ref_r, _ = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(recall, ref_r)
    np.testing.assert_allclose(precision, ref_p)
    sweep = threshold_sweep(s, y)
    for i in (0, len(sweep["threshold"]) // 2, len(sweep["threshold"]) - 1):
        cut = sweep["threshold"][i]
        pred = (s >= cut).astype(int)
        assert sweep["precision"][i] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
        assert sweep["recall"][i] == pytest.approx(skm.recall_score(y, pred))
        assert sweep["f1"][i] == pytest.approx(skm.f1_score(y, pred))
    rel = reliability(s, y, n_bins=5)
    obs, pred_mean = calibration_curve(y, s, n_bins=5)
    np.testing.assert_allclose(rel["observed"], obs)
    np.testing.assert_allclose(rel["predicted"], pred_mean)
    assert rel["bin_counts"].sum() == len(s)
    assert majority_accuracy(y) == pytest.approx(max(y.mean(), 1 - y.mean()))


def test_unbounded_detector_scores_give_the_same_metrics_as_sklearn():
    """torchmetrics would read scores outside [0, 1] as logits; the metrics module must not let that move the cut."""
    from netad.metrics import bootstrap_ci, held_out_metrics

    s, y = scored(seed=8)
    z = (s.astype(np.float64) - 0.5) * 12.0  # standardised-looking scores, many outside [0, 1]
    z[:5] = z[5]  # ties
    threshold = 0.7
    ours = held_out_metrics(z, y, threshold)
    for name, value in sklearn_metrics(z, y, threshold).items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    assert ours["fpr"] == pytest.approx(np.mean(z[y == 0] >= threshold))
    # the intervals see the same map: identical to the probability scores' (a monotone transform)
    ci_z = bootstrap_ci(z, y, threshold, 50, seed=3)
    ci_s = bootstrap_ci(1 / (1 + np.exp(-z)), y, 1 / (1 + np.exp(-threshold)), 50, seed=3)
    for name in ("f1", "auroc", "auprc"):
        assert ci_z[name]["low"] == pytest.approx(ci_s[name]["low"], abs=1e-6), name


def test_target_fpr_with_saturated_scores_flags_nothing_rather_than_too_much():
    s = np.array([1.0, 1.0, 1.0, 0.2, 0.1, 0.9], dtype=np.float32)
    y = np.array([1, 0, 0, 0, 0, 1])
    t = choose_threshold(s, y, "target_fpr", target_fpr=0.01)
    assert false_positive_rate(s, y, t) == 0.0  # a cut of exactly 1.0 would flag half the normal rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_a_torchmetrics_collection(seed):
    """The epoch metrics (functional torchmetrics, one call each) against the stateful collection they replace,
    with tied scores and a threshold sitting exactly on a score (flagged: score >= threshold)."""
    import torch
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (BinaryAccuracy, BinaryAUROC, BinaryAveragePrecision, BinaryF1Score,
                                             BinaryPrecision, BinaryRecall)

    from netad.metrics import binary_metrics
    from netad.metrics.scores import _strict_cut

    gen = torch.Generator().manual_seed(seed)
    scores = (torch.rand(3000, generator=gen) * 50).round() / 50  # many ties
    target = (torch.rand(3000, generator=gen) < 0.3 + 0.4 * scores).long()
    threshold = float(scores[17])
    reference = MetricCollection({
        "accuracy": BinaryAccuracy(threshold=_strict_cut(threshold)),
        "precision": BinaryPrecision(threshold=_strict_cut(threshold), zero_division=0),
        "recall": BinaryRecall(threshold=_strict_cut(threshold), zero_division=0),
        "f1": BinaryF1Score(threshold=_strict_cut(threshold), zero_division=0),
        "auroc": BinaryAUROC(), "auprc": BinaryAveragePrecision(),
    })
    expected = {k: float(v) for k, v in reference(scores, target).items()}
    got = binary_metrics(scores, target, threshold)
    assert got == pytest.approx(expected, abs=1e-6)
    flagged = scores >= threshold
    assert got["recall"] == pytest.approx(int((flagged & (target == 1)).sum()) / int((target == 1).sum()), abs=1e-12)
    one_class = binary_metrics(scores, torch.zeros_like(target), threshold)
    assert math.isnan(one_class["auroc"]) and math.isnan(one_class["auprc"])
    assert one_class["accuracy"] == pytest.approx(int((~flagged).sum()) / len(target), abs=1e-12)
