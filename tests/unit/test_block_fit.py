"""Preprocessing fitted on rows that come in blocks (out of core) equals the fit on the same rows in memory:
exactly where it is exact, within float rounding for the scaler, and from the sample for quantiles."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import make_frame
from netad.data.preprocessing import TabularPreprocessor


def _frame(n: int = 700, seed: int = 3) -> pd.DataFrame:
    frame = make_frame(n=n, seed=seed).drop(columns=["label"])
    frame.loc[[3, 77, 400], "packet_size"] = np.nan
    frame["answer"] = np.where(np.arange(n) % 3 == 0, "yes", "no")
    frame["step"] = np.where(np.arange(n) < n // 2, 1.0, 2.0)  # constant within the first blocks only
    return frame


def _blocks(frame: pd.DataFrame, size: int):
    return lambda: (frame.iloc[i:i + size] for i in range(0, len(frame), size))


def _fit(blocks, sample, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TabularPreprocessor(**kw).fit_blocks(blocks, sample).state


@pytest.mark.parametrize("kw", [dict(nan_policy="median", log_transform="auto"),
                                dict(nan_policy="zero", scaler="minmax", max_categories=2)])
def test_blocks_of_all_rows_fit_what_the_rows_in_memory_fit(kw):
    frame = _frame()
    whole = _fit(lambda: iter([frame]), frame, **kw)
    blocked = _fit(_blocks(frame, 64), frame, **kw)
    for key in ("input_columns", "kinds", "dropped_constant", "boolean", "categorical", "feature_names"):
        assert blocked[key] == whole[key], key
    for key in ("columns", "impute", "log"):
        assert blocked["numeric"][key] == whole["numeric"][key], key
    for key in ("center", "scale"):  # partial_fit sums block by block: the last bits may differ
        np.testing.assert_allclose(blocked["numeric"][key], whole["numeric"][key], rtol=1e-12, atol=1e-12)
    assert "step" in whole["numeric"]["columns"] and whole["kinds"]["answer"] == "boolean"


def test_kinds_and_constants_are_decided_over_all_blocks():
    frame = pd.DataFrame({"flag": ["1", "0"] * 50 + ["yes", "no"] * 50,  # 1/0 alone would be a category
                          "same": ["a"] * 200, "late_gap": [1.0] * 199 + [np.nan], "x": np.arange(200.0)})
    state = _fit(_blocks(frame, 50), frame)
    assert state["kinds"]["flag"] == "boolean"
    assert state["dropped_constant"] == ["same"]  # one value and a gap are two values, as nunique(dropna=False)
    assert state["numeric"]["columns"] == ["late_gap", "x"]
    whole = _fit(lambda: iter([frame]), frame)
    assert {k: state[k] for k in ("kinds", "dropped_constant", "boolean", "categorical")} == \
        {k: whole[k] for k in ("kinds", "dropped_constant", "boolean", "categorical")}


def test_a_sample_gives_the_quantiles_and_everything_else_stays_exact():
    frame = _frame(n=2000)
    sample = frame.sample(n=500, random_state=0)
    kw = dict(nan_policy="median", log_transform="auto")
    whole = _fit(lambda: iter([frame]), frame, **kw)
    sampled = _fit(_blocks(frame, 256), sample, **kw)
    assert sampled["categorical"] == whole["categorical"] and sampled["kinds"] == whole["kinds"]
    assert sampled["numeric"]["log"] == whole["numeric"]["log"]
    median = frame["packet_size"].median()
    j = whole["numeric"]["columns"].index("packet_size")
    assert whole["numeric"]["impute"][j] == median
    assert sampled["numeric"]["impute"][j] == sample["packet_size"].median() != median
