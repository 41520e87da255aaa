"""The parts of out-of-core training: encoded row files, block shuffling, row blocks of a source, large splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_frame
from netad.config import load_config
from netad.data.loading import load_table
from netad.data.outofcore import BLOCKS_PER_ITEM, BlockShuffle, EncodedFile
from netad.data.preprocessing import Encoded
from netad.data.streaming import AUTO_CELLS, RecordBlocks, estimated_cells, load_streamed, out_of_core


def test_encoded_rows_come_back_as_written(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(1000, 5)).astype(np.float32)
    codes = [rng.integers(0, 7, 1000), rng.integers(0, 3, 1000)]
    out = EncodedFile.create(tmp_path / "train", 1000, 5, 2)
    for s in range(0, 1000, 300):
        out.append(Encoded(dense[s:s + 300], [c[s:s + 300] for c in codes]))
    out.finish()
    rows = EncodedFile(tmp_path / "train")
    assert len(rows) == 1000
    part = rows.read(123, 789)
    assert np.array_equal(part.dense, dense[123:789]) and part.dense.flags.writeable
    assert all(np.array_equal(a, b[123:789]) for a, b in zip(part.codes, codes))
    assert np.array_equal(np.load(tmp_path / "train.dense.npy"), dense)  # plain .npy files
    rows.close()
    with open(tmp_path / "train.dense.npy", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(OSError, match="not all there"):
        EncodedFile(tmp_path / "train").read(0, 1000)


def test_block_shuffling_reads_every_row_once_an_epoch_in_blocks():
    sampler = BlockShuffle(10_000, 32, steps_per_item=16, shuffle=True, seed=3)
    assert sampler.block_rows == 32 * 16 // BLOCKS_PER_ITEM
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        items = list(sampler)
        rows = np.concatenate([np.arange(a, b) for ranges, _ in items for a, b in ranges])
        assert np.array_equal(np.sort(rows), np.arange(10_000))  # every row, once
        assert all(len(ranges) <= BLOCKS_PER_ITEM for ranges, _ in items)
        assert all(b - a <= sampler.block_rows and a % sampler.block_rows == 0 for r, _ in items for a, b in r)
        epochs.append(items)
    assert epochs[0] != epochs[1]  # a new order each epoch
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # a pure function of (seed, epoch): what a resumed run sees


def test_block_shuffling_splits_items_between_ddp_processes():
    ranks = [list(BlockShuffle(5000, 10, steps_per_item=8, shuffle=True, seed=1, rank=r, world_size=3))
             for r in range(3)]
    assert len({len(r) for r in ranks}) == 1
    whole = list(BlockShuffle(5000, 10, steps_per_item=8, shuffle=True, seed=1))
    assert {item for r in ranks for item in r} == set(whole)


def test_validation_items_are_batches_in_order():
    items = list(BlockShuffle(10_000, 4096))
    assert items == [(((0, 4096),), None), (((4096, 8192),), None), (((8192, 10_000),), None)]


def _write(frame: pd.DataFrame, path):
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100)


def test_row_blocks_are_the_rows_load_table_reads(tmp_path):
    frame = make_frame(n=1000, seed=5)
    (tmp_path / "parts").mkdir()
    _write(frame.iloc[:600], tmp_path / "parts" / "a.parquet")
    frame.iloc[600:].to_csv(tmp_path / "parts" / "b.csv", index=False)
    cfg = load_config(None, [f"data.data_path={tmp_path / 'parts'}"]).data
    blocks = list(RecordBlocks(cfg, block_rows=128))
    assert [b.start for b in blocks[:2]] == [0, 128] and sum(len(b.labels) for b in blocks) == 1000
    whole = load_table(cfg)
    streamed = load_streamed(cfg)
    assert np.array_equal(streamed.labels, whole.labels) and streamed.features is None
    got = pd.concat([b.features for b in blocks], ignore_index=True)
    pd.testing.assert_frame_equal(got, whole.features, check_dtype=False)
    picked = np.array([0, 5, 127, 128, 599, 600, 999])
    pd.testing.assert_frame_equal(streamed.rows(picked), whole.features.iloc[picked].reset_index(drop=True),
                                  check_dtype=False)


def test_in_memory_auto_goes_out_of_core_above_the_documented_size(tmp_path, monkeypatch):
    _write(make_frame(n=1000, seed=6), tmp_path / "t.parquet")
    cfg = load_config(None, [f"data.data_path={tmp_path / 't.parquet'}"]).data
    assert estimated_cells(tmp_path / "t.parquet") == 1000 * 7
    assert cfg.in_memory == "auto" and not out_of_core(cfg) and AUTO_CELLS == 500_000_000
    monkeypatch.setattr("netad.data.streaming.AUTO_CELLS", 6999)
    assert out_of_core(cfg)
    assert not out_of_core(cfg.model_copy(update={"in_memory": True}))


def test_reading_blocks_of_parquet_holds_less_than_pre_buffered_reads(tmp_path):
    """pyarrow pre-buffers Parquet reads by default, and a reader whose blocks span several row groups then holds
    several blocks' worth of buffers, more as it goes. The block reader turns pre-buffering off: this fails when
    pyarrow's default reads stop holding more than it (then the setting no longer earns its place)."""
    rng = np.random.default_rng(0)
    n = 600_000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(9)})
    frame["label"] = rng.integers(0, 2, n)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=25_000)
    cfg = load_config(None, [f"data.data_path={path}"]).data
    ours = []
    for block in RecordBlocks(cfg, block_rows=131_072):
        ours.append(pa.total_allocated_bytes())
        del block
    default = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=131_072):
        default.append(pa.total_allocated_bytes())
        del batch
    assert len(ours) == len(default) == 5
    assert max(ours) < 0.6 * max(default)


def test_scores_from_the_files_follow_the_rows_asked_for(tmp_path):
    from netad.data.outofcore import OutOfCoreDataModule

    class Scores:  # a predictor whose score of a row is its first encoded value
        def score_encoded(self, enc):
            return enc.dense[:, 0].copy(), None

    frame = make_frame(n=300, seed=6)
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = load_config(None, [f"data.data_path={tmp_path / 't.csv'}"])
    rows = np.arange(300)
    dm = OutOfCoreDataModule(cfg, rows[::2], rows[1::2], table=load_streamed(cfg.data), folder=tmp_path / "rows")
    dm.setup("fit")
    try:
        in_order = dm.scores(Scores(), "val")
        asked = np.array([299, 1, 151, 3])
        assert np.array_equal(dm.scores(Scores(), "val", asked), in_order[(asked - 1) // 2])
        with pytest.raises(ValueError, match="not among this module's val rows"):
            dm.scores(Scores(), "val", np.array([2]))
    finally:
        dm.remove_files()
