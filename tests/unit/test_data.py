"""Loading bad input, stratified splits, the batch loader and the data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fast_config, make_frame
from netad.config import DataConfig
from netad.data.datamodule import NetworkDataModule, TensorBatchLoader
from netad.data.loading import load_table
from netad.data.splits import make_folds, split_test, split_val
from netad.errors import UserError


def load_error(path: Path, **cfg) -> str:
    with pytest.raises(UserError) as info:
        load_table(DataConfig(data_path=str(path), **cfg))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ loading: good input


def test_load_table_splits_label(csv_path, frame):
    table = load_table(DataConfig(data_path=str(csv_path)))
    assert len(table) == len(frame)
    assert "label" not in table.features.columns
    assert list(table.features.columns) == [c for c in frame.columns if c != "label"]
    np.testing.assert_array_equal(table.labels, frame["label"].to_numpy().astype(int))
    assert table.labels.dtype == np.int64


def test_string_labels_with_normal_value(tmp_path, frame):
    rng = np.random.default_rng(0)
    attack = np.where(frame["label"] == 1, rng.choice(["dos", "probe", "r2l"], len(frame)), "normal")
    data = frame.drop(columns=["label"]).assign(attack=attack)
    path = tmp_path / "s.csv"
    data.to_csv(path, index=False)
    table = load_table(DataConfig(data_path=str(path), label_column="attack", normal_value="normal"))
    np.testing.assert_array_equal(table.labels, (attack != "normal").astype(int))


def test_numeric_labels_with_numeric_normal_value(tmp_path, frame):
    data = frame.assign(label=np.where(frame["label"] == 1, 7, 3))
    path = tmp_path / "n.csv"
    data.to_csv(path, index=False)
    table = load_table(DataConfig(data_path=str(path), normal_value=3))
    np.testing.assert_array_equal(table.labels, frame["label"].to_numpy().astype(int))


def test_yes_no_labels_map_to_0_1(tmp_path, frame):
    data = frame.assign(label=np.where(frame["label"] == 1, "yes", "no"))
    path = tmp_path / "yn.csv"
    data.to_csv(path, index=False)
    table = load_table(DataConfig(data_path=str(path)))
    np.testing.assert_array_equal(table.labels, frame["label"].to_numpy().astype(int))


def test_headerless_file_with_column_names(tmp_path, frame):
    path = tmp_path / "noheader.csv"
    frame.to_csv(path, index=False, header=False)
    table = load_table(DataConfig(data_path=str(path), column_names=list(frame.columns)))
    assert len(table) == len(frame)  # the first row is data, not a header
    np.testing.assert_allclose(table.features["packet_size"], frame["packet_size"])
    np.testing.assert_array_equal(table.labels, frame["label"].to_numpy().astype(int))


@pytest.mark.parametrize("header", [True, False])
def test_text_columns_keep_number_like_categories_as_written(tmp_path, frame, header):
    """A model's category columns in another file: "01" stays "01" even where every value there looks
    like a number (pandas alone reads 1, or 1.0 next to a gap)."""
    data = frame.head(6).assign(protocol=["01", "7", "01", "7", "7", "01"])
    path = tmp_path / "numberlike.csv"
    data.to_csv(path, index=False, header=header)
    names = None if header else list(frame.columns)
    plain = load_table(DataConfig(data_path=str(path), column_names=names))
    assert plain.features["protocol"].tolist()[:2] == [1, 7]  # what pandas does by itself
    data.loc[3, "protocol"] = None
    data.to_csv(path, index=False, header=header)
    table = load_table(DataConfig(data_path=str(path), column_names=names, nan_policy="zero"),
                       text_columns=["protocol", "absent"])
    assert table.features["protocol"].tolist()[:3] == ["01", "7", "01"]
    assert table.features["protocol"].isna().tolist() == [False, False, False, True, False, False]
    np.testing.assert_allclose(table.features["packet_size"], data["packet_size"])  # the others as before


def test_drop_columns(csv_path):
    table = load_table(DataConfig(data_path=str(csv_path), drop_columns=["bytes", "constant"]))
    assert "bytes" not in table.features.columns and "constant" not in table.features.columns
    assert "packet_size" in table.features.columns


# ------------------------------------------------------------------ loading: bad input


def test_missing_file(tmp_path):
    msg = load_error(tmp_path / "nope.csv")
    assert "not found" in msg and "nope.csv" in msg


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "empty" in load_error(path)


def test_header_only_file(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("packet_size,bytes,label\n")
    assert "no rows" in load_error(path)


def test_missing_label_column(csv_path):
    msg = load_error(csv_path, label_column="is_attack")
    assert "'is_attack'" in msg
    assert "not found" in msg
    assert "packet_size" in msg  # lists the columns it did find


def test_single_class_labels(tmp_path, frame):
    path = tmp_path / "one.csv"
    frame.assign(label=0.0).to_csv(path, index=False)
    msg = load_error(path)
    assert "one class" in msg and "normal" in msg


def test_string_labels_need_normal_value(tmp_path, frame):
    path = tmp_path / "s.csv"
    frame.assign(label=np.where(frame["label"] == 1, "attack", "benign")).to_csv(path, index=False)
    msg = load_error(path)
    assert "normal_value" in msg
    assert "'label'" in msg


def test_normal_value_matching_every_row(tmp_path, frame):
    path = tmp_path / "s.csv"
    frame.assign(label="normal").to_csv(path, index=False)
    assert "one class" in load_error(path, normal_value="normal")


def test_empty_label_values(tmp_path, frame):
    data = frame.copy()
    data.loc[[3, 10], "label"] = np.nan
    path = tmp_path / "nanlabel.csv"
    data.to_csv(path, index=False)
    msg = load_error(path)
    assert "2 empty" in msg


@pytest.fixture
def dirty_csv(tmp_path, frame) -> tuple[Path, np.ndarray]:
    data = frame.copy()
    data.loc[[5, 17, 40], "packet_size"] = np.nan
    data.loc[[8, 17], "bytes"] = np.inf
    path = tmp_path / "dirty.csv"
    data.to_csv(path, index=False)
    bad = np.zeros(len(data), dtype=bool)
    bad[[5, 8, 17, 40]] = True
    return path, bad


def test_nan_and_inf_with_error_policy(dirty_csv):
    path, _ = dirty_csv
    msg = load_error(path, nan_policy="error")
    assert "'packet_size' (3 rows)" in msg
    assert "'bytes' (2 rows)" in msg
    assert "inter_arrival_time" not in msg
    assert "nan_policy" in msg


def test_nan_policy_drop_removes_rows(dirty_csv, frame):
    path, bad = dirty_csv
    table = load_table(DataConfig(data_path=str(path), nan_policy="drop"))
    assert len(table) == len(frame) - bad.sum()
    assert np.isfinite(table.features.select_dtypes("number").to_numpy()).all()
    np.testing.assert_array_equal(table.labels, frame["label"].to_numpy()[~bad].astype(int))
    np.testing.assert_allclose(table.features["inter_arrival_time"], frame["inter_arrival_time"][~bad])
    assert list(table.features.index) == list(range(len(table)))


@pytest.mark.parametrize("policy", ["median", "zero"])
def test_nan_policy_impute_keeps_rows_as_nan(dirty_csv, frame, policy):
    path, bad = dirty_csv
    table = load_table(DataConfig(data_path=str(path), nan_policy=policy))
    assert len(table) == len(frame)
    # inf became NaN, left for the preprocessor to fill with training statistics
    assert table.features["bytes"].isna().sum() == 2
    assert not np.isinf(table.features["bytes"]).any()


def test_column_names_count_mismatch(tmp_path, frame):
    path = tmp_path / "noheader.csv"
    frame.to_csv(path, index=False, header=False)
    msg = load_error(path, column_names=list(frame.columns)[:-1])
    assert f"has {frame.shape[1]} columns" in msg
    assert f"lists {frame.shape[1] - 1}" in msg


def test_drop_columns_absent(csv_path):
    msg = load_error(csv_path, drop_columns=["bytes", "ghost"])
    assert "ghost" in msg and "drop_columns" in msg
    assert "bytes" not in msg.split(":")[-1]


def test_binary_file(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(bytes(range(256)) * 4)
    load_error(path)  # any UserError, not a crash


# ------------------------------------------------------------------ splits


def ratio(labels: np.ndarray, idx: np.ndarray) -> float:
    return float(labels[idx].mean())


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(11)
    y = np.zeros(1000, dtype=np.int64)
    y[rng.choice(1000, 200, replace=False)] = 1
    return y


def test_split_test_stratified_and_disjoint(labels):
    dev, test = split_test(labels, 0.2, seed=0)
    assert len(test) == 200
    assert np.intersect1d(dev, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([dev, test])), np.arange(len(labels)))
    overall = labels.mean()
    assert abs(ratio(labels, test) - overall) < 0.01
    assert abs(ratio(labels, dev) - overall) < 0.01
    dev2, test2 = split_test(labels, 0.2, seed=0)
    np.testing.assert_array_equal(test, test2)
    assert not np.array_equal(test, split_test(labels, 0.2, seed=1)[1])


def test_split_val_stratified(labels):
    idx = np.arange(0, 1000, 2)
    train, val = split_val(idx, labels, 0.25, seed=0)
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), idx)
    assert abs(ratio(labels, val) - labels[idx].mean()) < 0.02


@pytest.mark.parametrize("n_splits", [3, 5])
def test_make_folds(labels, n_splits):
    dev, test = split_test(labels, 0.2, seed=0)
    folds = make_folds(dev, labels, n_splits, shuffle=True, random_state=0, stratify=True, val_size=0.2)
    assert [f.fold for f in folds] == list(range(n_splits))
    overall = labels.mean()
    all_eval = np.concatenate([f.eval for f in folds])
    # every dev row is in exactly one fold's eval part, and no test row is
    np.testing.assert_array_equal(np.sort(all_eval), dev)
    for f in folds:
        parts = {"train": f.train, "val": f.val, "eval": f.eval}
        for name, idx in parts.items():
            assert np.intersect1d(idx, test).size == 0, name
            assert abs(ratio(labels, idx) - overall) < 0.03, name
        assert np.intersect1d(f.train, f.val).size == 0
        assert np.intersect1d(f.train, f.eval).size == 0
        assert np.intersect1d(f.val, f.eval).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([f.train, f.val, f.eval])), dev)
        assert f.to_json()["eval"] == f.eval.tolist()


def test_make_folds_too_few_positives():
    y = np.zeros(200, dtype=np.int64)
    y[:6] = 1
    with pytest.raises(UserError) as info:
        make_folds(np.arange(200), y, 5, shuffle=True, random_state=0, stratify=True, val_size=0.2)
    assert "n_splits" in str(info.value)
    assert "6 anomalous" in str(info.value)


def test_split_test_needs_two_of_each_class():
    y = np.zeros(50, dtype=np.int64)
    y[0] = 1
    with pytest.raises(UserError):
        split_test(y, 0.2, seed=0)


# ------------------------------------------------------------------ TensorBatchLoader


def make_loader(n: int = 23, batch: int = 5, shuffle: bool = True, seed: int = 0) -> TensorBatchLoader:
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    y = torch.arange(n, dtype=torch.float32)
    return TensorBatchLoader(x, y, batch, shuffle=shuffle, seed=seed)


def epoch_order(loader: TensorBatchLoader) -> list[int]:
    out = []
    for xb, yb in loader:
        assert torch.equal(xb[:, 0], yb)  # rows stay aligned with their labels
        out += yb.long().tolist()
    return out


def test_loader_batches():
    loader = make_loader(n=23, batch=5)
    sizes = [len(yb) for _, yb in loader]
    assert len(loader) == 5
    assert sizes == [5, 5, 5, 5, 3]
    assert len(make_loader(n=20, batch=5)) == 4


def test_loader_every_row_once_per_epoch():
    loader = make_loader(n=23, batch=4)
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        assert sorted(epoch_order(loader)) == list(range(23))


def test_loader_order_depends_on_seed_and_epoch_only():
    loader = make_loader(n=50, batch=7, seed=3)
    loader.sampler.set_epoch(3)
    first = epoch_order(loader)
    loader.sampler.set_epoch(1)
    epoch_order(loader)
    loader.sampler.set_epoch(3)
    assert epoch_order(loader) == first
    other = make_loader(n=50, batch=7, seed=3)  # a fresh loader (e.g. after a resume)
    other.sampler.set_epoch(3)
    assert epoch_order(other) == first
    loader.sampler.set_epoch(4)
    assert epoch_order(loader) != first
    seeded = make_loader(n=50, batch=7, seed=4)
    seeded.sampler.set_epoch(3)
    assert epoch_order(seeded) != first
    assert first != list(range(50))


def test_loader_without_shuffle_keeps_order():
    loader = make_loader(n=23, batch=6, shuffle=False)
    loader.sampler.set_epoch(5)
    assert epoch_order(loader) == list(range(23))


def test_loader_is_a_dataloader_that_leaves_the_global_rng_alone():
    """Dropout is seeded per epoch from the global RNG: iterating batches (a DataLoader draws a seed for each
    iterator) must not move it, or a resumed run would train with other dropout masks."""
    from torch.utils.data import DataLoader

    loader = make_loader(n=23, batch=5)
    assert isinstance(loader, DataLoader) and loader.batch_size is None  # whole batches, no per-row collate
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    epoch_order(loader)
    epoch_order(make_loader(n=23, batch=5, shuffle=False))
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------ NetworkDataModule


def test_datamodule_fits_on_train_rows_only(tmp_path):
    frame = make_frame(n=240, seed=5)
    path = tmp_path / "dm.csv"
    frame.to_csv(path, index=False)
    cfg = fast_config(tmp_path, path)
    table = load_table(cfg.data)
    dev, test = split_test(table.labels, 0.2, seed=0)
    train, val = split_val(dev, table.labels, 0.2, seed=0)
    dm = NetworkDataModule(cfg, train, val, test, table=table, seed=0)
    with pytest.warns(UserWarning, match="constant"):
        dm.setup("fit")
    pre = dm.preprocessor
    cols = pre.state["numeric"]["columns"]
    train_mean = frame.iloc[train][cols].to_numpy().mean(axis=0)
    np.testing.assert_allclose(pre.state["numeric"]["center"], train_mean, rtol=1e-10)
    assert not np.allclose(pre.state["numeric"]["center"], frame[cols].to_numpy().mean(axis=0))
    assert dm.input_dim == pre.output_dim
    for part, idx in {"train": train, "val": val, "eval": test}.items():
        x, y = dm.tensors[part]
        assert x.shape == (len(idx), dm.input_dim)
        np.testing.assert_array_equal(y.numpy(), table.labels[idx])
    np.testing.assert_array_equal(dm.train_labels(), table.labels[train])
    # training batches come in groups (several optimizer steps per trainer step)
    assert sum(len(yb) for group in dm.train_dataloader() for _, yb in group) == len(train)
    assert len(dm.val_dataloader()) == 1  # evaluation batches are at least 4096 rows
    assert sum(len(yb) for _, yb in dm.test_dataloader()) == len(test)
    dm.setup("test")  # a second setup keeps the fitted preprocessor
    assert dm.preprocessor is pre


def test_datamodule_reads_table_from_config(cfg, frame):
    idx = np.arange(len(frame))
    dm = NetworkDataModule(cfg, idx[:200], idx[200:])
    with pytest.warns(UserWarning):
        dm.setup()
    assert dm.table is not None and len(dm.table) == len(frame)
    assert "eval" not in dm.tensors


@pytest.mark.parametrize("k", [1, 4, 64])
def test_loader_groups_the_same_batches(k):
    """steps_per_item=k: items are tuples of up to k consecutive batches, the same batches in the same order."""
    x, y = torch.arange(200, dtype=torch.float32).reshape(100, 2), torch.arange(100, dtype=torch.float32)
    plain = TensorBatchLoader(x, y, 16, shuffle=True, seed=3)
    grouped = TensorBatchLoader(x, y, 16, shuffle=True, seed=3, steps_per_item=k)
    plain.sampler.set_epoch(2)
    grouped.sampler.set_epoch(2)
    items = list(grouped)
    assert len(items) == len(grouped) == -(-7 // k)
    assert all(isinstance(item, tuple) and 1 <= len(item) <= k for item in items)
    flat = [batch for item in items for batch in item]
    expected = list(plain)
    assert len(flat) == len(expected) == 7
    for (gx, gy), (ex, ey) in zip(flat, expected):
        assert torch.equal(gx, ex) and torch.equal(gy, ey)
    with pytest.raises(ValueError):
        TensorBatchLoader(x, y, 16, steps_per_item=0)


# ------------------------------------------------------------------ careless input
def load_and_warnings(path: Path, caplog, **cfg):
    """The table and the warnings loading it logged, as one text."""
    import logging

    with caplog.at_level(logging.WARNING, logger="netad"):
        table = load_table(DataConfig(data_path=str(path), **cfg))
    return table, " ".join(r.getMessage() for r in caplog.records)


def test_a_few_unparsable_cells_keep_a_number_column_numeric(tmp_path, caplog):
    """One '?' or a quoted '1,234' must not silently turn a number column into categories."""
    from netad.data.preprocessing import TabularPreprocessor

    frame = make_frame(n=200, seed=1).astype({"packet_size": object, "bytes": object})
    frame.loc[[5, 17], "packet_size"] = "?"
    frame.loc[9, "bytes"] = "1,234"
    path = tmp_path / "dirty.csv"
    frame.to_csv(path, index=False)
    table, said = load_and_warnings(path, caplog, nan_policy="median")
    assert "column 'packet_size' holds numbers except in 2 of 200 cells ('?')" in said
    assert "column 'bytes' holds numbers except in 1 of 200 cells ('1,234')" in said
    kinds = TabularPreprocessor(nan_policy="median").fit(table.features).state["kinds"]
    assert kinds["packet_size"] == kinds["bytes"] == "numeric"
    assert table.features["packet_size"].isna().sum() == 2
    # with the default nan_policy the rows are refused, naming the column and the count
    assert "'packet_size' (2 rows)" in load_error(path)
    # a real text column is left alone
    words = make_frame(n=200, seed=1).astype({"protocol": object})
    words.loc[:150, "protocol"] = [str(i) for i in range(151)]
    words.to_csv(tmp_path / "words.csv", index=False)
    assert load_table(DataConfig(data_path=str(tmp_path / "words.csv"))).features["protocol"].dtype != float


def test_labels_that_differ_from_normal_value_by_case_or_spaces_are_warned_about(tmp_path, caplog):
    import logging

    frame = make_frame(n=60, seed=2)
    frame["label"] = np.where(frame["label"] > 0, "attack", "normal").astype(object)
    frame.loc[[1, 2, 3], "label"] = "Normal"
    frame.loc[4, "label"] = " NOR MAL "
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    table, said = load_and_warnings(path, caplog, normal_value="normal")
    assert "'Normal' (3 rows)" in said and "NOR MAL" in said and "only by case or spaces" in said
    assert table.labels[[1, 2, 3, 4]].tolist() == [1, 1, 1, 1]  # still anomalies: the user decides
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="netad"):
        load_table(DataConfig(data_path=str(path), normal_value="attack"))
    assert not caplog.records


@pytest.mark.parametrize("name", ["traffic.csv.gz", "traffic.csv.bz2", "traffic.csv.xz", "traffic.csv.zst",
                                  "gzip-without-suffix.csv"])
def test_compressed_training_files_are_read_by_extension_or_first_bytes(tmp_path, csv_path, name):
    import bz2
    import gzip
    import lzma

    import zstandard

    data = csv_path.read_bytes()
    pack = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": zstandard.ZstdCompressor().compress, ".csv": gzip.compress}[Path(name).suffix]
    path = tmp_path / name
    path.write_bytes(pack(data))
    plain, packed = load_table(DataConfig(data_path=str(csv_path))), load_table(DataConfig(data_path=str(path)))
    assert packed.features.equals(plain.features) and (packed.labels == plain.labels).all()


def test_damaged_and_archived_training_files_are_one_line(tmp_path, csv_path):
    import gzip

    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(csv_path.read_bytes())[:-30])
    assert "cannot be decompressed" in load_error(cut)
    archive = tmp_path / "data.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(40))
    assert "zip archive" in load_error(archive)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(csv_path.read_bytes().replace(b"udp", b"ud\xe9", 1))
    assert "is not UTF-8 text" in load_error(latin)


def test_identifier_like_text_columns_are_named_at_fit(recwarn):
    from netad.data.preprocessing import TabularPreprocessor

    frame = make_frame(n=100, seed=3)
    frame["src_ip"] = [f"10.0.{i % 7}.{i % 31}" for i in range(100)]
    frame["session"] = [f"s-{i:04d}" for i in range(100)]
    state = TabularPreprocessor().fit(frame.drop(columns=["label"])).state
    found = state["categorical"]["identifier_like"]
    assert found["src_ip"] == "IP addresses"
    assert found["session"].startswith("mostly distinct values: 100 in 100 rows")
    assert "protocol" not in found
    messages = [str(w.message) for w in recwarn]
    assert any("'src_ip' looks like an identifier" in m and "data.drop_columns" in m for m in messages)
