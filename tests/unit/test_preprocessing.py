"""TabularPreprocessor: column kinds, fitting on training rows only, encoding and state."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from netad.data.preprocessing import UNKNOWN, TabularPreprocessor, infer_kinds
from netad.errors import UserError


@pytest.fixture
def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["label"])


def fit_quiet(pre: TabularPreprocessor, frame: pd.DataFrame) -> TabularPreprocessor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pre.fit(frame)


def block(pre: TabularPreprocessor, x: np.ndarray, column: str) -> np.ndarray:
    """The one-hot columns of ``column`` in the transformed matrix."""
    names = pre.state["feature_names"]
    cols = [i for i, n in enumerate(names) if n.startswith(f"{column}=")]
    assert cols == list(range(cols[0], cols[-1] + 1))  # contiguous
    return x[:, cols]


# ------------------------------------------------------------------ kinds


def test_infer_kinds_on_fixture(features):
    kinds = infer_kinds(features)
    assert kinds == {
        "packet_size": "numeric",
        "inter_arrival_time": "numeric",
        "bytes": "numeric",
        "is_tcp": "boolean",
        "protocol": "categorical",
        "constant": "numeric",
    }


@pytest.mark.parametrize("dtype", [object, None], ids=["object", "default-str"])
def test_infer_kinds_boolean_strings(dtype):
    frame = pd.DataFrame(
        {
            "flag": pd.Series(["True", "False", "True", "False"], dtype=dtype),
            "yes_no": pd.Series(["yes", "no", " YES ", "No"], dtype=dtype),
            "zero_one": [0, 1, 1, 0],  # plain 0/1 integers stay numeric
            # only 0/1 strings: not enough to call it boolean
            "zero_one_str": pd.Series(["0", "1", "1", "0"], dtype=dtype),
        }
    )
    kinds = infer_kinds(frame)
    assert kinds["flag"] == "boolean"
    assert kinds["yes_no"] == "boolean"
    assert kinds["zero_one"] == "numeric"
    assert kinds["zero_one_str"] == "categorical"


def test_boolean_strings_are_encoded_as_0_1():
    frame = pd.DataFrame({"flag": ["True", "False", "true", "FALSE"], "x": [1.0, 2.0, 3.0, 4.0]})
    pre = TabularPreprocessor().fit(frame)
    x = pre.transform(frame)
    col = pre.state["feature_names"].index("flag")
    assert x[:, col].tolist() == [1.0, 0.0, 1.0, 0.0]


# ------------------------------------------------------------------ fit / dims


def test_constant_column_dropped_with_warning(features):
    pre = TabularPreprocessor()
    with pytest.warns(UserWarning, match="constant"):
        pre.fit(features)
    assert pre.state["dropped_constant"] == ["constant"]
    assert not any(n == "constant" or n.startswith("constant=") for n in pre.state["feature_names"])
    x = pre.transform(features)
    assert x.shape == (len(features), pre.output_dim)
    assert x.dtype == np.float32
    # 3 numerics + 1 boolean + (3 protocols + unknown)
    assert pre.output_dim == 3 + 1 + 4


def test_column_constant_only_in_training_rows_is_dropped(features):
    train = features.copy()
    train["inter_arrival_time"] = 1.0
    pre = TabularPreprocessor()
    with pytest.warns(UserWarning, match="inter_arrival_time"):
        pre.fit(train)
    assert "inter_arrival_time" not in pre.state["feature_names"]
    assert pre.transform(features).shape[1] == pre.output_dim


def test_standard_scaler_uses_training_rows_only(features):
    train = features.iloc[: len(features) // 3]
    pre = fit_quiet(TabularPreprocessor(scaler="standard"), train)
    cols = pre.state["numeric"]["columns"]
    assert cols == ["packet_size", "inter_arrival_time", "bytes"]
    center = np.asarray(pre.state["numeric"]["center"])
    scale = np.asarray(pre.state["numeric"]["scale"])
    sub = train[cols].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(center, sub.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(scale, sub.std(axis=0, ddof=0), rtol=1e-10)
    # the statistics are not the whole frame's (no leakage from the other rows)
    full = features[cols].to_numpy(dtype=np.float64)
    assert not np.allclose(center, full.mean(axis=0))
    assert not np.allclose(scale, full.std(axis=0))
    # and transform applies exactly those statistics, also to rows not seen at fit
    x = pre.transform(features)
    np.testing.assert_allclose(x[:, :3], (full - center) / scale, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x[: len(train), :3].mean(axis=0), 0, atol=1e-5)


def test_minmax_scaler_uses_training_rows_only(features):
    train = features.iloc[50:150]
    pre = fit_quiet(TabularPreprocessor(scaler="minmax"), train)
    x = pre.transform(train)
    np.testing.assert_allclose(x[:, :3].min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(x[:, :3].max(axis=0), 1, atol=1e-6)
    center = np.asarray(pre.state["numeric"]["center"])
    np.testing.assert_allclose(center, train[pre.state["numeric"]["columns"]].min().to_numpy())


def test_no_scaler_passes_numerics_through(features):
    pre = fit_quiet(TabularPreprocessor(scaler="none"), features)
    x = pre.transform(features)
    np.testing.assert_allclose(x[:, 0], features["packet_size"].to_numpy(), rtol=1e-6)


# ------------------------------------------------------------------ categorical


def test_unseen_category_goes_to_unknown_bucket(features):
    train = features[features["protocol"] != "icmp"]
    pre = fit_quiet(TabularPreprocessor(), train)
    names = [n for n in pre.state["feature_names"] if n.startswith("protocol=")]
    assert set(names) == {"protocol=tcp", "protocol=udp", f"protocol={UNKNOWN}"}
    x = pre.transform(features)
    onehot = block(pre, x, "protocol")
    assert (onehot.sum(axis=1) == 1).all()
    assert set(np.unique(onehot)) <= {0.0, 1.0}
    unknown = onehot[:, names.index(f"protocol={UNKNOWN}")]
    np.testing.assert_array_equal(unknown == 1, (features["protocol"] == "icmp").to_numpy())
    tcp = onehot[:, names.index("protocol=tcp")]
    np.testing.assert_array_equal(tcp == 1, (features["protocol"] == "tcp").to_numpy())


def test_max_categories_limits_block():
    rng = np.random.default_rng(0)
    # a has 40 rows, b 30, c 20, d 10: with max_categories=2 only a and b keep their own column
    values = np.array(["a"] * 40 + ["b"] * 30 + ["c"] * 20 + ["d"] * 10)
    frame = pd.DataFrame({"cat": rng.permutation(values), "x": rng.normal(size=100)})
    pre = TabularPreprocessor(max_categories=2).fit(frame)
    names = [n for n in pre.state["feature_names"] if n.startswith("cat=")]
    assert names == ["cat=a", "cat=b", f"cat={UNKNOWN}"]
    onehot = block(pre, pre.transform(frame), "cat")
    assert onehot.shape[1] == 3
    assert (onehot.sum(axis=1) == 1).all()
    assert onehot[:, 2].sum() == 30  # c and d


# ------------------------------------------------------------------ log transform


def test_log_transform_auto_picks_heavy_tail(features):
    pre = fit_quiet(TabularPreprocessor(log_transform="auto"), features)
    logged = dict(zip(pre.state["numeric"]["columns"], pre.state["numeric"]["log"]))
    assert logged["bytes"] is True
    assert logged["inter_arrival_time"] is False
    assert logged["packet_size"] is False
    x = pre.transform(features)
    col = pre.state["feature_names"].index("bytes")
    logb = np.log1p(features["bytes"].to_numpy())
    np.testing.assert_allclose(x[:, col], (logb - logb.mean()) / logb.std(), rtol=1e-4, atol=1e-4)


def test_log_transform_explicit_list(features):
    pre = fit_quiet(TabularPreprocessor(log_transform=["inter_arrival_time"]), features)
    logged = dict(zip(pre.state["numeric"]["columns"], pre.state["numeric"]["log"]))
    assert logged == {"packet_size": False, "inter_arrival_time": True, "bytes": False}


def test_log_transform_none(features):
    pre = fit_quiet(TabularPreprocessor(log_transform="none"), features)
    assert not any(pre.state["numeric"]["log"])


def test_log_transform_unknown_column(features):
    with pytest.raises(UserError) as info:
        fit_quiet(TabularPreprocessor(log_transform=["bytes", "no_such_col"]), features)
    assert "no_such_col" in str(info.value)
    assert "bytes" not in str(info.value).split(":")[-1]


# ------------------------------------------------------------------ NaN imputation


def test_median_imputation_uses_training_rows(features):
    data = features.copy()
    rng = np.random.default_rng(1)
    holes = rng.choice(len(data), 40, replace=False)
    data.loc[holes, "packet_size"] = np.nan
    train = data.iloc[:150]
    pre = fit_quiet(TabularPreprocessor(nan_policy="median"), train)
    impute = dict(zip(pre.state["numeric"]["columns"], pre.state["numeric"]["impute"]))
    expected = float(np.nanmedian(train["packet_size"].to_numpy()))
    assert impute["packet_size"] == pytest.approx(expected)
    assert impute["packet_size"] != pytest.approx(float(np.nanmedian(data["packet_size"])))
    x = pre.transform(data)
    assert np.isfinite(x).all()
    center = pre.state["numeric"]["center"][0]
    scale = pre.state["numeric"]["scale"][0]
    np.testing.assert_allclose(x[holes, 0], (expected - center) / scale, rtol=1e-5)


def test_zero_imputation_and_inf_at_transform(features):
    pre = fit_quiet(TabularPreprocessor(nan_policy="zero", scaler="none"), features)
    data = features.copy()
    data.loc[0, "packet_size"] = np.nan
    data.loc[1, "packet_size"] = np.inf
    x = pre.transform(data)
    assert x[0, 0] == 0.0 and x[1, 0] == 0.0


# ------------------------------------------------------------------ state


def test_state_roundtrip_through_json(features):
    pre = fit_quiet(TabularPreprocessor(log_transform="auto", max_categories=2), features.iloc[:200])
    state = pre.state_dict()
    text = json.dumps(state)
    restored = TabularPreprocessor.from_state(json.loads(text))
    np.testing.assert_array_equal(restored.transform(features), pre.transform(features))
    assert restored.output_dim == pre.output_dim


def test_from_state_rejects_bad_state():
    with pytest.raises(UserError):
        TabularPreprocessor.from_state({"version": 999})
    with pytest.raises(UserError):
        TabularPreprocessor.from_state(None)


def test_transform_missing_columns(features):
    pre = fit_quiet(TabularPreprocessor(), features)
    with pytest.raises(UserError) as info:
        pre.transform(features.drop(columns=["bytes", "protocol"]))
    msg = str(info.value)
    assert "bytes" in msg and "protocol" in msg
    assert "packet_size" not in msg


def test_transform_before_fit(features):
    pre = TabularPreprocessor()
    with pytest.raises(RuntimeError, match="not fitted"):
        pre.transform(features)
    with pytest.raises(RuntimeError):
        _ = pre.output_dim


def test_encode_matches_transform():
    """The compact form expands to the matrix ``transform`` gives."""
    from conftest import make_frame

    frame = make_frame(n=40, seed=2).drop(columns=["label"])
    pre = TabularPreprocessor().fit(frame)
    new = make_frame(n=12, seed=9).drop(columns=["label"])
    new.loc[3, "protocol"] = "sctp"  # unseen: the unknown bucket
    enc = pre.encode(new)
    assert enc.codes[0][3] == len(pre.state["categorical"]["categories"][0])
    np.testing.assert_array_equal(pre.to_matrix(enc), pre.transform(new))


@pytest.mark.parametrize("nan_policy", ["median", "error"])
def test_every_route_gives_the_same_encoding(features, nan_policy):
    """A DataFrame (encode), a 2-D block of numbers with parsed booleans and category values (the JSON
    route's form) and one read-only Arrow column per numeric column with looked-up codes (the batch
    scorer's) go through one encoder: exactly equal arrays, with gaps imputed, log and plain columns,
    booleans written as text and an unseen category; the inputs are left as they were."""
    import pyarrow as pa

    from netad.data.preprocessing import parse_boolean

    pre = fit_quiet(TabularPreprocessor(nan_policy=nan_policy, log_transform="auto"), features)
    st = pre.state
    assert any(st["numeric"]["log"]) and not all(st["numeric"]["log"])
    rows = features.copy()
    rows["is_tcp"] = np.where(features["is_tcp"], "Yes", " f ")
    rows.loc[3, "protocol"] = "sctp"
    if nan_policy == "median":
        rows.loc[[2, 7], "packet_size"], rows.loc[5, "bytes"] = np.nan, np.inf
    expected = pre.encode(rows)

    num = rows[st["numeric"]["columns"]].to_numpy(dtype=np.float64)
    before = num.copy()
    flags = [np.array([parse_boolean(v) for v in rows[c]], dtype=np.float32) for c in st["boolean"]["columns"]]
    names = [rows[c].tolist() for c in st["categorical"]["columns"]]
    block = pre.encode_columns(num, flags, names)
    columns = [pa.array(c).to_numpy() for c in num.T]  # zero-copy and read-only, as the batch scorer's
    assert not any(c.flags.writeable for c in columns)
    codes = [pre.category_codes(i, v) for i, v in enumerate(names)]
    arrow = pre.encode_arrays(columns, flags, codes, finite=nan_policy == "error")
    for got in (block, arrow):
        np.testing.assert_array_equal(got.dense, expected.dense)
        assert len(got.codes) == len(expected.codes) == 1
        np.testing.assert_array_equal(got.codes[0], expected.codes[0])
    np.testing.assert_array_equal(num, before)
    np.testing.assert_array_equal(np.column_stack(columns), before)
    # what was encoded: the unseen category's bucket, the booleans, finite features (gaps imputed)
    assert expected.codes[0][3] == len(st["categorical"]["categories"][0])
    k = len(st["numeric"]["columns"])
    np.testing.assert_array_equal(expected.dense[:, k], features["is_tcp"].to_numpy(dtype=np.float32))
    assert np.isfinite(expected.dense).all()
    np.testing.assert_array_equal(pre.to_matrix(expected), pre.transform(rows))


def test_a_boolean_reads_the_same_one_by_one_and_as_a_column():
    """parse_boolean (the JSON route) and a DataFrame column (encode, row_problems) read booleans by one rule."""
    from netad.data.preprocessing import parse_boolean

    good = [True, False, np.True_, 1, 0, np.int64(1), "Yes", " t ", "FALSE", "0", "no"]
    bad = [2, 1.0, 0.0, "maybe", "", None, float("nan"), [1], 10**400]
    assert [parse_boolean(v) for v in good] == [True, False, True, True, False, True, True, True, False, False, False]
    assert [parse_boolean(v) for v in bad] == [None] * len(bad)
    pre = TabularPreprocessor().fit(pd.DataFrame({"flag": ["yes", "no"] * 2, "x": [1.0, 2.0, 3.0, 4.0]}))
    rows = pd.DataFrame({"flag": pd.Series(good + bad, dtype=object), "x": 1.0})
    reasons = pre.row_problems(rows)
    assert (reasons[: len(good)] == "").all() and (reasons[len(good):] != "").all()
    assert "missing value" in reasons[-4] and "not true/false" in reasons[len(good)]
    flag = pre.state["feature_names"].index("flag")
    expected = [float(parse_boolean(v) or 0) for v in good + bad]  # encode reads what is not true as 0
    assert pre.encode(rows).dense[:, flag].tolist() == expected


def test_row_problems_flags_exactly_the_values_the_encoder_makes_inf(features):
    """One formula: a value is too large when its float32 feature is inf, not when its float64 scaled
    value passes float32's largest (that one rounds down to it)."""
    pre = fit_quiet(TabularPreprocessor(scaler="none"), features)
    top = float(np.finfo(np.float32).max)
    rows = features.head(5).copy()
    rows["packet_size"] = [1.0, top + 2.0**102, top + 2.0**104, -1e300, 1e308]
    reasons = pre.row_problems(rows)
    assert reasons[:2].tolist() == ["", ""]
    assert all("packet_size" in r and "too large" in r for r in reasons[2:])
    dense = pre.encode(rows).dense[:, pre.state["feature_names"].index("packet_size")]
    assert dense[1] == top
    np.testing.assert_array_equal(np.isfinite(dense), reasons == "")


@pytest.mark.parametrize("hidden, blocks", [([16, 8], [4, 3]), ([1], [4, 3]), ([16, 8], [])])
def test_split_input_mlp_gives_the_mlp_logits(hidden, blocks):
    """Also for a one-unit first layer (its weight's transpose is contiguous: no view may leak
    into the model) and for a model without categorical columns; the MLP's weights stay as they were."""
    import torch

    from netad.inference.lookup import SplitInputMLP
    from netad.models.mlp import MLP

    torch.manual_seed(0)
    net = MLP(5 + sum(blocks), hidden, 0.0, "gelu").eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    dense = torch.randn(20_000, 5)  # more rows than one slice
    codes = [torch.randint(0, size, (20_000,)) for size in blocks]
    onehot = torch.cat([dense, *(torch.nn.functional.one_hot(c, size) for c, size in zip(codes, blocks))], 1)
    split = SplitInputMLP(net, 5, blocks)
    with torch.no_grad():
        expected = net(onehot.float())
    torch.testing.assert_close(split(dense, codes), expected, rtol=0, atol=1e-5)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="first layer reads"):
        SplitInputMLP(net, 5, [*blocks, 1])
