"""Attack types: the type column, by_type / by_family folds, and recall per type (seen and unseen)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TYPES, typed_frame
from netad.config import load_config
from netad.data.loading import load_table
from netad.data.splits import make_folds, split_test
from netad.errors import UserError
from netad.metrics import seen_rows, type_recall
from netad.training.cv import compute_splits

FAMILIES = "{dos: [dos_a, dos_b], probe: [probe_a, probe_b], r2l: [r2l_a, r2l_b], u2r: [u2r_a]}"


@pytest.fixture
def typed_csv(tmp_path):
    path = tmp_path / "typed.csv"
    typed_frame().to_csv(path, index=False)
    return path


def _cfg(path, *sets):
    return load_config(None, [f"data.data_path={path}", "data.type_column=attack_cat", *sets])


def test_the_type_column_is_read_and_never_a_feature(typed_csv):
    table = load_table(_cfg(typed_csv).data)
    raw = pd.read_csv(typed_csv)
    assert "attack_cat" not in table.features.columns
    assert list(table.types) == [str(t) for t in raw["attack_cat"]]


def test_the_label_column_may_name_the_types(tmp_path):
    frame = typed_frame()
    frame["label"] = frame.pop("attack_cat")  # NSL-KDD: the attack name is the label
    frame.to_csv(tmp_path / "named.csv", index=False)
    cfg = load_config(None, [f"data.data_path={tmp_path / 'named.csv'}", "data.type_column=label",
                             "data.normal_value=normal"])
    table = load_table(cfg.data)
    assert "label" not in table.features.columns
    assert set(table.types[table.labels == 1]) == set(TYPES)
    assert (table.labels == (table.types != "normal")).all()


def test_rows_the_nan_policy_drops_take_their_types_with_them(tmp_path):
    frame = typed_frame()
    frame.loc[[5, 9], "packet_size"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    table = load_table(_cfg(tmp_path / "gaps.csv", "data.nan_policy=drop").data)
    expected = frame.drop(index=[5, 9])["attack_cat"].tolist()
    assert len(table.types) == len(table) == len(frame) - 2 and list(table.types) == expected


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["attack_cat"]), "data.type_column 'attack_cat' not found"),
    (lambda f: f.assign(attack_cat=f["label"]), "holds one value for every anomalous row"),
])
def test_a_type_column_that_names_no_types_is_one_line(tmp_path, change, message):
    change(typed_frame()).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match=message):
        load_table(_cfg(tmp_path / "bad.csv").data)


def test_families_must_cover_every_attack_type_of_a_training_file(typed_csv):
    with pytest.raises(UserError, match="no family to attack type u2r_a.*lists u2r_typo, which are not in the file"):
        load_table(_cfg(typed_csv, "data.type_families={dos: [dos_a, dos_b], probe: [probe_a, probe_b], "
                                   "r2l: [r2l_a, r2l_b], u2r: [u2r_typo]}").data)
    load_table(_cfg(typed_csv, f"data.type_families={FAMILIES}").data)  # names beyond the file's types are fine


@pytest.mark.parametrize("sets, message", [
    (["cross_validation.strategy=by_type"], "needs data.type_column"),
    (["data.type_column=t", "cross_validation.strategy=by_family"], "needs data.type_families"),
    (["data.type_column=t", "data.type_families={a: [x], b: [x]}"], "'x' is in two families"),
])
def test_config_rules_of_the_strategies(sets, message):
    with pytest.raises(UserError, match=message):
        load_config(None, sets)


@pytest.mark.parametrize("strategy", ["by_type", "by_family"])
def test_folds_never_share_an_attack_group(typed_csv, strategy):
    n_splits = 3 if strategy == "by_type" else 4
    cfg = _cfg(typed_csv, f"cross_validation.strategy={strategy}", f"cross_validation.n_splits={n_splits}",
               f"data.type_families={FAMILIES}")
    table = load_table(cfg.data)
    groups = table.types if strategy == "by_type" else np.array([t.split("_")[0] if t != "normal" else t
                                                                 for t in table.types])
    dev, test, folds = compute_splits(cfg, table)
    held_out_groups = []
    for fold in folds:
        fit = np.concatenate([fold.train, fold.val])
        assert not set(fit) & set(fold.eval) and not (set(fit) | set(fold.eval)) & set(test)
        seen = set(groups[fit][table.labels[fit] == 1])
        held = set(groups[fold.eval][table.labels[fold.eval] == 1])
        assert held and seen and not held & seen  # the fold's model never met its held-out attack groups
        assert (table.labels[fold.eval] == 0).sum() >= len(dev) * 0.1 // n_splits  # normal rows spread out
        held_out_groups.append(held)
    assert set().union(*held_out_groups) == set(groups[dev][table.labels[dev] == 1])
    assert sorted(np.concatenate([f.eval for f in folds]).tolist()) == sorted(dev.tolist())  # each row once


def test_fewer_attack_types_than_folds_is_one_line():
    labels = np.array([0] * 60 + [1] * 40)
    types = np.array(["normal"] * 60 + ["a"] * 20 + ["b"] * 20, dtype=object)
    dev, _ = split_test(labels, 0.2, 0)
    with pytest.raises(UserError, match=r"2 attack types \(a, b\), fewer than n_splits=3"):
        make_folds(dev, labels, 3, True, 0, True, 0.2, groups=types)


def test_type_recall_counts_each_type_and_splits_seen_from_unseen():
    rng = np.random.default_rng(3)
    types = rng.choice(["normal", "x", "y", "z"], 500)
    labels = (types != "normal").astype(int)
    flagged = rng.random(500) < 0.6
    seen = seen_rows(types, ["x", "y"])
    out = type_recall(flagged, labels, types, seen, {"x": "f1", "y": "f1", "z": "f2"})
    for entry in out["types"]:
        rows = types == entry["type"]
        assert entry["rows"] == rows.sum() and entry["recall"] == pytest.approx(flagged[rows].mean())
        assert entry["seen"] == (entry["type"] in ("x", "y"))
    assert "normal" not in [e["type"] for e in out["types"]]
    f1 = np.isin(types, ["x", "y"])
    assert {e["family"]: e["recall"] for e in out["families"]}["f1"] == pytest.approx(flagged[f1].mean())
    assert out["seen_recall"] == pytest.approx(flagged[f1].mean())
    assert out["unseen_recall"] == pytest.approx(flagged[types == "z"].mean())
    assert out["unseen_rows"] == (types == "z").sum()


def test_the_base_rate_line_is_bayes_rule():
    from netad.training.card import precision_at_base_rate

    rng = np.random.default_rng(0)
    n, rate, recall, fpr = 2_000_000, 0.001, 0.8, 0.01  # simulate alarms in traffic with that base rate
    attack = rng.random(n) < rate
    alarm = np.where(attack, rng.random(n) < recall, rng.random(n) < fpr)
    assert precision_at_base_rate(recall, fpr, rate) == pytest.approx(attack[alarm].mean(), abs=0.01)


def test_detection_rate_at_a_false_positive_rate_is_the_best_cut_that_stays_under_it():
    from netad.metrics import recall_at_fpr

    rng = np.random.default_rng(1)
    labels = (rng.random(400) < 0.4).astype(int)
    scores = np.round(rng.random(400) + 0.5 * labels, 2)  # ties, as saturated probabilities make them
    best = 0.0
    for cut in np.unique(scores):  # brute force: every cut "flag score >= cut"
        flagged = scores >= cut
        if flagged[labels == 0].mean() <= 0.05:
            best = max(best, flagged[labels == 1].mean())
    assert recall_at_fpr(scores, labels, 0.05) == pytest.approx(best)
    tied = np.where(labels == 1, 1.0, np.where(np.arange(400) % 10 == 0, 1.0, 0.2))  # 10 % of normal rows at the top
    assert recall_at_fpr(tied, labels, 0.05) == 0.0


def test_normal_rows_may_leave_the_type_blank_but_anomalies_may_not(tmp_path):
    frame = typed_frame()
    frame.loc[frame["label"] == 0, "attack_cat"] = ""  # UNSW-NB15 style: no category for normal traffic
    frame.to_csv(tmp_path / "blank.csv", index=False)
    table = load_table(_cfg(tmp_path / "blank.csv").data)
    assert set(table.types[table.labels == 0]) == {"normal"}
    frame.loc[frame.index[frame["label"] == 1][:3], "attack_cat"] = ""
    frame.to_csv(tmp_path / "blank.csv", index=False)
    with pytest.raises(UserError, match="'attack_cat' is empty in 3 anomalous rows"):
        load_table(_cfg(tmp_path / "blank.csv").data)
