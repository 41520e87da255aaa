"""Out-of-core training data (``data.in_memory: false``): a fold's rows preprocessed once into files, read back
block by block.

:class:`OutOfCoreDataModule` fits the fold's preprocessing on its training rows in two streaming passes over the
source files (:meth:`~netad.data.preprocessing.TabularPreprocessor.fit_blocks`: exact counts, extremes and
scaler; the median and 99th percentile from a uniform sample of :data:`SAMPLE_ROWS` training rows), then writes
its training, validation and held-out rows, encoded (scaled numbers and flags as float32, category codes as
int32), to ``.npy`` files beside its checkpoints, in file order. Training batches come from those files with
block-level shuffling (:class:`BlockShuffle`): each epoch reads blocks of consecutive rows in a shuffled order and
shuffles the rows of a few blocks together, so the pages read stay sequential and memory holds a few blocks, never
the file. The files are read with ``pread`` rather than mapped, because the pages of a memory map that have been
read count as the process's own memory until the kernel needs them back.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from netad.config import Config
from netad.data.datamodule import NetworkDataModule, as_is, loader_settings
from netad.data.preprocessing import Encoded, TabularPreprocessor
from netad.data.streaming import StreamedTable

#: training rows the quantile statistics (median, 99th percentile), the explanation baseline and the drift
#: summary are taken from
SAMPLE_ROWS = 200_000
#: blocks of consecutive rows whose rows are shuffled together into one trainer step's batches
BLOCKS_PER_ITEM = 4
_HEADER = {"fortran_order": False}


class EncodedFile:
    """Encoded rows in two ``.npy`` files (``<prefix>.dense.npy``: float32, ``<prefix>.codes.npy``: int32), written
    once in order, read by row ranges."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)
        self.dense_path, self.codes_path = Path(f"{prefix}.dense.npy"), Path(f"{prefix}.codes.npy")
        self._fds: Optional[tuple[int, int]] = None
        self.n = self.k = self.c = 0
        self._offsets = (0, 0)

    # ------------------------------------------------------------ writing
    @classmethod
    def create(cls, prefix: Path, n: int, k: int, c: int) -> "EncodedFile":
        out = cls(prefix)
        out.prefix.parent.mkdir(parents=True, exist_ok=True)
        out.n, out.k, out.c = n, k, c
        out._writers = [open(out.dense_path, "wb"), open(out.codes_path, "wb")]
        for fh, dtype, width in zip(out._writers, ("<f4", "<i4"), (k, c)):
            np.lib.format.write_array_header_1_0(fh, dict(_HEADER, descr=dtype, shape=(n, width)))
        out._written = 0
        return out

    def append(self, enc: Encoded) -> None:
        dense = np.ascontiguousarray(enc.dense, dtype=np.float32)
        codes = np.stack(enc.codes, axis=1).astype(np.int32) if enc.codes else np.zeros((len(dense), 0), np.int32)
        self._writers[0].write(dense.tobytes())
        self._writers[1].write(np.ascontiguousarray(codes).tobytes())
        self._written += len(dense)

    def finish(self) -> None:
        for fh in self._writers:
            fh.close()
        if self._written != self.n:
            raise RuntimeError(f"{self.prefix}: {self._written} rows written, {self.n} expected")

    # ------------------------------------------------------------ reading
    def _open(self) -> None:
        fds, offsets, shapes = [], [], []
        for path in (self.dense_path, self.codes_path):
            with open(path, "rb") as fh:
                np.lib.format.read_magic(fh)
                shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                offsets.append(fh.tell())
                shapes.append(shape)
            fds.append(os.open(path, os.O_RDONLY))
        self._fds, self._offsets = (fds[0], fds[1]), (offsets[0], offsets[1])
        (self.n, self.k), (_, self.c) = shapes

    def __len__(self) -> int:
        if self._fds is None:
            self._open()
        return self.n

    def read(self, start: int, stop: int) -> Encoded:
        """Rows ``start`` to ``stop``."""
        if self._fds is None:
            self._open()
        rows = stop - start
        dense = np.empty((rows, self.k), dtype="<f4")
        codes = np.empty((rows, self.c), dtype="<i4")
        for fd, offset, out in zip(self._fds, self._offsets, (dense, codes)):
            if out.size:
                width = out.shape[1] * 4
                got = os.preadv(fd, [memoryview(out).cast("B")], offset + start * width)
                if got != out.nbytes:
                    raise OSError(f"{self.prefix}: rows {start}-{stop} are not all there (the file was cut short)")
        return Encoded(dense, [codes[:, j].astype(np.int64) for j in range(self.c)])

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None


class BlockShuffle(Sampler):
    """One epoch's items over ``n`` stored rows, a pure function of (seed, epoch) like
    :class:`~netad.data.datamodule.EpochPermutation`. Training (``steps_per_item``): the rows fall in blocks of
    consecutive rows, the blocks are shuffled, and each item is the next :data:`BLOCKS_PER_ITEM` blocks, whose rows
    are shuffled together and cut into up to ``steps_per_item`` batches. Otherwise each item is one batch of
    consecutive rows, in order. Under DDP each process takes every ``world_size``-th item, the list padded by
    wrapping around so every process gets as many."""

    def __init__(self, n: int, batch_size: int, *, steps_per_item: Optional[int] = None, shuffle: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.steps_per_item, self.shuffle = n, batch_size, steps_per_item, shuffle
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        per_item = batch_size * (steps_per_item or 1)
        self.block_rows = max(batch_size, per_item // BLOCKS_PER_ITEM) if steps_per_item else per_item

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _items(self) -> list[tuple[tuple[tuple[int, int], ...], Optional[int]]]:
        starts = list(range(0, self.n, self.block_rows))
        blocks = [(s, min(s + self.block_rows, self.n)) for s in starts]
        if not self.steps_per_item:
            items = [((b,), None) for b in blocks]
        else:
            gen = np.random.default_rng([self.seed, self.epoch])
            order = gen.permutation(len(blocks)) if self.shuffle else np.arange(len(blocks))
            groups = [order[i:i + BLOCKS_PER_ITEM] for i in range(0, len(order), BLOCKS_PER_ITEM)]
            seeds = gen.integers(0, 2**63 - 1, size=len(groups))
            items = [(tuple(blocks[j] for j in sorted(g)), int(s) if self.shuffle else None)
                     for g, s in zip(groups, seeds)]
        if self.world_size > 1 and items:
            total = -(-len(items) // self.world_size) * self.world_size
            items = (items * (-(-total // len(items))))[:total][self.rank::self.world_size]
        return items

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[Any]:
        yield from self._items()


class EncodedRows(Dataset):
    """Items of :class:`BlockShuffle` read from an :class:`EncodedFile`: a tuple of training ``(x, y)`` batches, or
    one ``(x, y)`` batch; ``x`` the full feature matrix (one-hot blocks expanded), float32."""

    def __init__(self, rows: EncodedFile, labels: np.ndarray, preprocessor: TabularPreprocessor, batch_size: int,
                 training: bool) -> None:
        self.rows, self.labels = rows, torch.from_numpy(np.asarray(labels, dtype=np.float32))
        self.pre, self.batch_size, self.training = preprocessor, batch_size, training

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: Any) -> Any:
        ranges, seed = item
        parts = [self.rows.read(a, b) for a, b in ranges]
        enc = parts[0] if len(parts) == 1 else Encoded(np.concatenate([p.dense for p in parts]),
                                                      [np.concatenate(c) for c in zip(*(p.codes for p in parts))])
        index = np.concatenate([np.arange(a, b) for a, b in ranges])
        if seed is not None:
            perm = np.random.default_rng(seed).permutation(len(index))
            enc, index = enc.take(perm), index[perm]
        x = torch.from_numpy(self.pre.to_matrix(enc))
        y = self.labels[torch.from_numpy(index)]
        if not self.training:
            return x, y
        return tuple((x[s:s + self.batch_size], y[s:s + self.batch_size]) for s in range(0, len(y), self.batch_size))


class OutOfCoreDataModule(L.LightningDataModule):
    """:class:`~netad.data.datamodule.NetworkDataModule`'s job for a :class:`StreamedTable`: one split of the rows,
    the preprocessing fitted on its ``train`` rows, batches read from files in ``folder`` (removed by
    :meth:`remove_files`)."""

    def __init__(self, cfg: Config, train_idx: np.ndarray, val_idx: np.ndarray, eval_idx: Optional[np.ndarray] = None,
                 table: Optional[StreamedTable] = None, seed: int = 0, folder: Optional[Path] = None) -> None:
        super().__init__()
        if table is None or folder is None:
            raise ValueError("OutOfCoreDataModule needs the streamed table and a folder for its files")
        self.cfg, self.table, self.seed, self.folder = cfg, table, seed, Path(folder)
        self.train_idx, self.val_idx = np.sort(np.asarray(train_idx)), np.sort(np.asarray(val_idx))
        self.eval_idx = None if eval_idx is None else np.sort(np.asarray(eval_idx))
        self.preprocessor: Optional[TabularPreprocessor] = None
        self.files: dict[str, EncodedFile] = {}
        self.sample: Optional[pd.DataFrame] = None
        self.sample_labels: Optional[np.ndarray] = None

    def prepare_data(self) -> None:
        pass

    def _sample_rows(self) -> np.ndarray:
        if len(self.train_idx) <= SAMPLE_ROWS:
            return self.train_idx
        gen = np.random.default_rng([self.seed, 104_729])
        return np.sort(gen.choice(self.train_idx, size=SAMPLE_ROWS, replace=False))

    def _train_blocks(self) -> Iterator[pd.DataFrame]:
        """The training rows block by block; the first pass also keeps the sample rows."""
        keep = self.sample is None
        picked = self._sample_rows() if keep else None
        drawn = []
        for block in self.table.blocks:
            stop = block.start + len(block.labels)
            lo, hi = np.searchsorted(self.train_idx, [block.start, stop])
            if hi > lo:
                yield block.features.iloc[self.train_idx[lo:hi] - block.start]
            if keep:
                a, b = np.searchsorted(picked, [block.start, stop])
                if b > a:
                    drawn.append(block.features.iloc[picked[a:b] - block.start])
        if keep:
            self.sample = pd.concat(drawn, ignore_index=True) if drawn else pd.DataFrame()
            self.sample_labels = self.table.labels[picked]

    def setup(self, stage: Optional[str] = None) -> None:
        if self.preprocessor is not None:
            return
        pre = TabularPreprocessor.from_config(self.cfg.data)
        self.preprocessor = pre.fit_blocks(self._train_blocks, lambda: self.sample)
        parts = {"train": self.train_idx, "val": self.val_idx}
        if self.eval_idx is not None:
            parts["eval"] = self.eval_idx
        k = len(pre.state["numeric"]["columns"]) + len(pre.state["boolean"]["columns"])
        c = len(pre.state["categorical"]["columns"])
        writers = {name: EncodedFile.create(self.folder / name, len(idx), k, c) for name, idx in parts.items()}
        columns = pre.state["input_columns"]
        for block in self.table.blocks:
            stop = block.start + len(block.labels)
            for name, idx in parts.items():
                lo, hi = np.searchsorted(idx, [block.start, stop])
                if hi > lo:
                    writers[name].append(pre.encode(block.features.iloc[idx[lo:hi] - block.start][columns]))
        for name, writer in writers.items():
            writer.finish()
            self.files[name] = EncodedFile(self.folder / name)
        normal = self.sample[self.sample_labels == 0]  # explanations are measured against typical normal traffic
        pre.fit_baseline(pre.transform(normal if len(normal) else self.sample))

    input_dim = NetworkDataModule.input_dim
    train_labels = NetworkDataModule.train_labels

    def _indices(self, part: str) -> np.ndarray:
        return {"train": self.train_idx, "val": self.val_idx, "eval": self.eval_idx}[part]

    def _labels(self, part: str) -> np.ndarray:
        return self.table.labels[self._indices(part)]

    def _loader(self, part: str) -> DataLoader:
        batch, rank, world, steps = loader_settings(self.trainer, self.cfg.training.batch_size, part)
        rows = self.files[part]
        sampler = BlockShuffle(len(rows), batch, steps_per_item=steps, shuffle=part == "train", seed=self.seed,
                               rank=rank, world_size=world)
        dataset = EncodedRows(rows, self._labels(part), self.preprocessor, batch, training=part == "train")
        return DataLoader(dataset, batch_size=None, sampler=sampler, collate_fn=as_is,
                          generator=torch.Generator().manual_seed(self.seed))

    train_dataloader = NetworkDataModule.train_dataloader
    val_dataloader = NetworkDataModule.val_dataloader
    test_dataloader = NetworkDataModule.test_dataloader
    predict_dataloader = NetworkDataModule.predict_dataloader

    # ------------------------------------------------------------ what training needs afterwards
    def scores(self, predictor: Any, part: str, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """The predictor's scores of a part's rows (``rows``, when given: some of them, in that order), from the
        encoded files: what the predictor's preprocessing makes of the raw rows."""
        stored, files = self._indices(part), self.files[part]
        step = 262_144
        out = [predictor.score_encoded(files.read(s, min(s + step, len(files))))[0] for s in range(0, len(files), step)]
        scores = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        if rows is None:
            return scores
        at = np.minimum(np.searchsorted(stored, rows), max(len(stored) - 1, 0))
        if len(rows) and (not len(stored) or not np.array_equal(stored[at], rows)):
            raise ValueError(f"rows that are not among this module's {part} rows")
        return scores[at]

    def summary_rows(self) -> pd.DataFrame:
        """The training rows a drift summary describes: the sample."""
        return self.sample

    def remove_files(self) -> None:
        for rows in self.files.values():
            rows.close()
        shutil.rmtree(self.folder, ignore_errors=True)
