"""LightningDataModule over in-memory tensors: DataLoaders of whole batches, shuffled per epoch, kept on the
training device."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from netad.config import Config
from netad.data.loading import LabelledTable, load_table
from netad.data.preprocessing import TabularPreprocessor


# optimizer steps per trainer step in training (see TensorBatchLoader): Lightning's per-step hooks cost about as
# much as a whole small-MLP step on the CPU; grouping makes them negligible, with the same batches and results
STEPS_PER_TRAINER_STEP = 64


class EpochPermutation(Sampler):
    """The batches of one epoch as row selections, a pure function of (seed, epoch): each item is the rows of
    one batch (a slice, or an index tensor when shuffled), or with ``steps_per_item=k`` a list of up to ``k``.

    Lightning calls ``set_epoch`` on a DataLoader's sampler at each epoch start, so a run resumed at epoch N
    sees exactly the batches an uninterrupted run would have seen. With ``world_size > 1`` (DDP) each process
    takes every ``world_size``-th row of the epoch's order starting at its ``rank``; the order is padded by
    wrapping around so every process gets the same number of rows and batches (what ``DistributedSampler``
    does). All processes share the seed, so together they cover the epoch once.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1, steps_per_item: Optional[int] = None,
                 device: Optional[torch.device] = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if steps_per_item is not None and steps_per_item < 1:
            raise ValueError(f"steps_per_item must be at least 1, got {steps_per_item}")
        self.n, self.batch_size, self.shuffle, self.seed, self.epoch = n, batch_size, shuffle, seed, 0
        self.rank, self.world_size, self.steps_per_item = rank, world_size, steps_per_item
        self.device = device or torch.device("cpu")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """All rows in this epoch's order."""
        if not self.shuffle:
            return torch.arange(self.n)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=gen)

    @property
    def rows_per_process(self) -> int:
        return -(-self.n // self.world_size)

    @property
    def num_batches(self) -> int:
        return (self.rows_per_process + self.batch_size - 1) // self.batch_size

    def __len__(self) -> int:
        if self.steps_per_item is None:
            return self.num_batches
        return -(-self.num_batches // self.steps_per_item)

    def indices(self) -> Optional[torch.Tensor]:
        """This process's rows of the epoch, in order; None for all rows in their stored order."""
        if self.world_size == 1 and not self.shuffle:
            return None
        order = self.order()
        if self.world_size > 1:
            total = self.rows_per_process * self.world_size
            order = order.repeat(-(-total // len(order)))[:total][self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[Any]:
        idx = self.indices()
        if idx is not None:
            idx = idx.to(self.device)  # once per epoch: each batch then indexes the tensors where they live
        n, bs = (self.n if idx is None else len(idx)), self.batch_size
        rows = [slice(s, s + bs) if idx is None else idx[s : s + bs] for s in range(0, n, bs)]
        if self.steps_per_item is None:
            yield from rows
            return
        for start in range(0, len(rows), self.steps_per_item):
            yield rows[start : start + self.steps_per_item]


class TensorRows(Dataset):
    """In-memory ``(x, y)`` tensors whose items are whole batches: ``dataset[rows]`` is ``(x[rows], y[rows])``
    for a slice or an index tensor (one index operation per batch, no per-row collate), and a list of row
    selections gives a tuple of such batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, rows: Any) -> Any:
        if isinstance(rows, list):
            return tuple(self[r] for r in rows)
        if isinstance(rows, slice):  # views, no copy
            return self.x[rows], self.y[rows]
        return self.x.index_select(0, rows), self.y.index_select(0, rows)  # a third of advanced indexing's cost


def as_is(item: Any) -> Any:
    """The DataLoader's collate for items that are already batches."""
    return item


class TensorBatchLoader(DataLoader):
    """A DataLoader of ``(x, y)`` batches sliced from whole tensors (:class:`TensorRows` through an
    :class:`EpochPermutation` sampler, ``batch_size=None``).

    With ``steps_per_item=k`` each item is instead a tuple of up to ``k`` consecutive ``(x, y)`` batches
    (see :class:`~netad.models.classifier.AnomalyClassifier`: one trainer step runs them all), so the
    trainer's per-step machinery is paid once per ``k`` optimizer steps. The batches are the same either way.

    The tensors stay where they are: on a GPU, batches are slices of GPU tensors and nothing is copied
    from the host per step. ``rank`` and ``world_size`` split the rows between DDP processes (see
    :class:`EpochPermutation`; the Trainer runs with ``use_distributed_sampler=False``).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, steps_per_item: Optional[int] = None):
        sampler = EpochPermutation(len(y), batch_size, shuffle, seed, rank, world_size, steps_per_item, x.device)
        # a generator of its own: each iterator draws a seed from it, which must not move the global RNG that
        # seeds dropout (a resumed run repeats an uninterrupted one)
        super().__init__(TensorRows(x, y), batch_size=None, sampler=sampler, collate_fn=as_is,
                         generator=torch.Generator().manual_seed(seed))

    @property
    def x(self) -> torch.Tensor:
        return self.dataset.x

    @property
    def rank(self) -> int:
        return self.sampler.rank

    @property
    def world_size(self) -> int:
        return self.sampler.world_size

    @property
    def steps_per_item(self) -> Optional[int]:
        return self.sampler.steps_per_item


class NetworkDataModule(L.LightningDataModule):
    """One split of one table: fits the preprocessor on the ``train`` rows in ``setup``.

    Pass the row indices of each part; ``eval_idx`` (a fold's held-out rows, or the test
    hold-out) becomes the test dataloader. A fresh instance is made for every fold.
    """

    def __init__(
        self,
        cfg: Config,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        eval_idx: Optional[np.ndarray] = None,
        table: Optional[LabelledTable] = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.table = table
        self.train_idx, self.val_idx = np.asarray(train_idx), np.asarray(val_idx)
        self.eval_idx = None if eval_idx is None else np.asarray(eval_idx)
        self.seed = seed
        self.preprocessor: Optional[TabularPreprocessor] = None
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._on_device: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare_data(self) -> None:  # reading a local CSV needs no download
        pass

    def setup(self, stage: Optional[str] = None) -> None:
        if self.preprocessor is not None:
            return
        if self.table is None:
            self.table = load_table(self.cfg.data)
        features, labels = self.table.features, self.table.labels
        self.preprocessor = TabularPreprocessor.from_config(self.cfg.data).fit(
            features.iloc[self.train_idx]
        )
        parts = {"train": self.train_idx, "val": self.val_idx}
        if self.eval_idx is not None:
            parts["eval"] = self.eval_idx
        for name, idx in parts.items():
            x = torch.from_numpy(self.preprocessor.transform(features.iloc[idx]))
            y = torch.from_numpy(labels[idx].astype(np.float32))
            self.tensors[name] = (x, y)
        x, y = self.tensors["train"]
        normal = x[y == 0]  # explanations are measured against typical normal training traffic
        self.preprocessor.fit_baseline((normal if len(normal) else x).numpy())

    @property
    def input_dim(self) -> int:
        assert self.preprocessor is not None, "call setup() first"
        return self.preprocessor.output_dim

    def train_labels(self) -> np.ndarray:
        return self.table.labels[self.train_idx]

    def scores(self, predictor: Any, part: str, rows: np.ndarray) -> np.ndarray:
        """The predictor's scores of a part's ``rows`` (``val``, or ``eval``: held-out rows this module need not
        have encoded), from the raw rows as they are served."""
        return predictor.score(self.table.features.iloc[rows])

    def summary_rows(self) -> Any:
        """The training rows a drift summary describes: all of them."""
        return self.table.features.iloc[self.train_idx]

    def remove_files(self) -> None:
        """Nothing: the rows live in memory."""

    def device_tensors(self, part: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``tensors[part]`` on ``device``, copied there once and kept (``tensors`` itself stays on the CPU)."""
        x, y = self.tensors[part]
        if x.device == device:
            return x, y
        key = (part, str(device))
        if key not in self._on_device:
            self._on_device[key] = (x.to(device), y.to(device))
        return self._on_device[key]

    def _loader(self, part: str) -> TensorBatchLoader:
        trainer = self.trainer  # set by Lightning while this datamodule serves a fit or test
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        x, y = self.device_tensors(part, device)
        batch, rank, world, steps = loader_settings(trainer, self.cfg.training.batch_size, part)
        return TensorBatchLoader(x, y, batch, shuffle=part == "train", seed=self.seed, rank=rank, world_size=world,
                                 steps_per_item=steps)

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train")

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val")

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("eval")

    def predict_dataloader(self) -> TensorBatchLoader:
        return self._loader("eval")


def loader_settings(trainer: Any, batch_size: int, part: str) -> tuple[int, int, int, Optional[int]]:
    """(rows per batch, DDP rank, world size, optimizer steps per item) of a part's loader. Only training rows are
    split between DDP processes: every process validates and tests on all rows, so thresholds, monitored metrics
    and checkpoint choices agree without any gathering. Training batches go to the model in groups (one trainer
    step, several optimizer steps); under DDP one at a time, since every backward pass must follow its own forward
    pass through the DDP wrapper. Evaluation batches are large (4096 rows or more)."""
    training = part == "train"
    batch = batch_size if training else max(batch_size, 4096)
    rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None and training else (0, 1)
    steps = (STEPS_PER_TRAINER_STEP if world == 1 else 1) if training else None
    return batch, rank, world, steps
