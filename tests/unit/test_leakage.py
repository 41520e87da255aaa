"""The leakage checks: a label copy, a label in words, an id in a sorted file and shared duplicate rows are
found; the bundled data and an honest fixture are not flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_frame
from netad.config import load_config
from netad.data.leakage import leakage_findings
from netad.data.loading import load_table
from netad.data.splits import split_test

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _check(frame: pd.DataFrame, label: str = "label"):
    labels = frame[label].to_numpy().astype(int)
    features = frame.drop(columns=[label])
    dev, test = split_test(labels, 0.2, 0)
    return leakage_findings(features, labels, dev, test)


def test_an_honest_fixture_is_not_flagged():
    assert _check(make_frame(n=2000, seed=1)) == []


def test_the_bundled_data_is_not_flagged():
    cfg = load_config(str(ROOT / "config.yaml"), [f"data.data_path={ROOT / 'data/raw/embedded_system_network_security_dataset.csv'}"])
    table = load_table(cfg.data)
    dev, test = split_test(table.labels, cfg.data.test_size, cfg.cross_validation.random_state)
    assert leakage_findings(table.features, table.labels, dev, test) == []


def test_a_label_copy_and_a_label_in_words_are_found():
    frame = make_frame(n=1000, seed=2)
    frame["label_copy"] = 1 - frame["label"]  # reversed: a column separates whichever way round it runs
    frame["verdict"] = np.where(frame["label"] == 1, "attack", "benign")
    found = {f.column: f for f in _check(frame)}
    assert set(found) == {"label_copy", "verdict"}
    assert all(f.kind == "separates" and f.figure == 1.0 for f in found.values())
    assert "alone separates the labels" in found["verdict"].message


def test_unique_ids_pass_unless_the_file_is_sorted_by_label():
    frame = make_frame(n=1000, seed=3)
    frame["flow_id"] = [f"f{i}" for i in range(len(frame))]  # unique text: learned on half, unknown on the other
    frame["id"] = np.arange(len(frame))
    assert _check(frame) == []
    ordered = frame.sort_values("label", kind="stable").reset_index(drop=True)
    ordered["id"] = np.arange(len(ordered))  # UNSW-NB15: an id column in a file sorted by label
    found = _check(ordered)
    assert [(f.kind, f.column) for f in found] == [("row_order", "id")]
    assert "rises with row order" in found[0].message


def test_duplicate_rows_shared_with_the_test_hold_out_are_counted():
    base = make_frame(n=600, seed=4)
    frame = pd.concat([base, base.iloc[:200]], ignore_index=True)  # 200 rows twice
    labels = frame["label"].to_numpy().astype(int)
    dev, test = split_test(labels, 0.2, 0)
    found = {f.kind: f for f in leakage_findings(frame.drop(columns=["label"]), labels, dev, test)}
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    shared = np.isin(h[test], h[dev]).sum()
    assert found["duplicates_test"].figure == pytest.approx(shared / len(test)) and shared > 0
    assert found["duplicates_dev"].figure == pytest.approx((len(dev) - len(np.unique(h[dev]))) / len(dev))
    assert f"{shared} of the {len(test)} test hold-out rows" in found["duplicates_test"].message
