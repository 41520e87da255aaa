"""Records too many for memory (``data.in_memory: false``): read block by block from their files, never as one frame.

The labels and attack types of every row are kept (a byte or two a row); the features are read again, block by
block, whenever a fold needs them. Parquet blocks are record batches of the file; CSV files are read by pyarrow's
streaming reader, whose column types come from the file's first block (a later value that does not fit them is
an error: write the file as Parquet). Each block goes through the same steps as a file read whole
(:func:`netad.data.loading.labelled`), except that a text column of numbers with a few bad cells stays text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from netad.config import DataConfig
from netad.data.loading import LabelledTable, check_attack_types, labelled
from netad.data.sources import check_named_columns, data_files, is_parquet, schema_mismatch, with_text_columns
from netad.errors import UserError

#: rows read at a time
BLOCK_ROWS = 131_072
#: ``data.in_memory: auto`` reads the data out of core when its rows times columns pass this (8 bytes a value:
#: about 4 GB as float64, more as pandas text)
AUTO_CELLS = 500_000_000


@dataclass
class Block:
    """Rows ``start`` to ``start + len(labels)`` of a source: features as pandas reads them, 0/1 labels, types."""

    start: int
    features: pd.DataFrame
    labels: np.ndarray
    types: Optional[np.ndarray]


class RecordBlocks:
    """The rows of every file of ``spec`` (a file, a folder or a glob; CSV or Parquet), block by block, numbered
    from 0 across the files (rows the NaN policy drops are not numbered). Iterate it as often as needed: each
    pass gives the same blocks."""

    def __init__(self, cfg: DataConfig, spec: Optional[str | Path] = None, block_rows: int = BLOCK_ROWS) -> None:
        self.cfg, self.spec = cfg, str(spec or cfg.data_path)
        self.files = data_files(self.spec)
        self.block_rows = block_rows

    def __iter__(self) -> Iterator[Block]:
        start, first_columns = 0, None
        for path in self.files:
            for frame in self._frames(path):
                if first_columns is None:
                    first_columns = list(frame.columns)
                elif list(frame.columns) != first_columns:
                    problem = schema_mismatch(path, frame.columns, self.files[0], first_columns)
                    if problem:
                        raise UserError(problem)
                    frame = frame[first_columns]
                part = labelled(frame, self.cfg, path, allow_one_class=True, bad_cells=False)
                yield Block(start, part.features, part.labels, part.types)
                start += len(part.labels)

    def _frames(self, path: Path) -> Iterator[pd.DataFrame]:
        import pyarrow as pa

        if path.stat().st_size == 0:
            raise UserError(f"data file is empty: {path}")
        try:
            if is_parquet(path):
                import pyarrow.parquet as pq

                source = pq.ParquetFile(path, pre_buffer=False)  # pre-buffered reads keep every block read
                check_named_columns(path, source.schema_arrow.names, self.cfg.column_names)
                for batch in source.iter_batches(batch_size=self.block_rows):
                    table = pa.Table.from_batches([batch])
                    yield with_text_columns(table, table.column_names, ()).to_pandas()
                return
            yield from self._csv_frames(path)
        except (pa.ArrowInvalid, OSError) as exc:
            hint = "" if is_parquet(path) else ("; out of core, a CSV file's column types come from its first block: "
                                                "write it as Parquet")
            raise UserError(f"{path}: cannot be read block by block ({str(exc).splitlines()[0]}){hint}") from None

    def _csv_frames(self, path: Path) -> Iterator[pd.DataFrame]:
        import pyarrow.csv as pacsv

        from netad.data.compression import decompressing, open_binary

        names = self.cfg.column_names
        read = pacsv.ReadOptions(column_names=names, block_size=16 << 20) if names else \
            pacsv.ReadOptions(block_size=16 << 20)
        reader, raw, kind = open_binary(path)
        try:
            with decompressing(path, kind):
                stream = pacsv.open_csv(reader, read_options=read,
                                        convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
                pending: list[pd.DataFrame] = []
                rows = 0
                for batch in stream:
                    pending.append(batch.to_pandas())
                    rows += batch.num_rows
                    if rows >= self.block_rows:
                        yield pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
                        pending, rows = [], 0
                if pending:
                    yield pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
        finally:
            reader.close()
            raw.close()


@dataclass
class StreamedTable(LabelledTable):
    """A :class:`LabelledTable` whose features stay in their files (``features`` is None): the labels and attack
    types of every row in memory, the rows themselves read by ``blocks``."""

    blocks: Optional[RecordBlocks] = field(default=None, repr=False)

    def rows(self, indices: np.ndarray) -> pd.DataFrame:
        """Some rows' features (sorted row numbers), read block by block."""
        indices = np.asarray(indices)
        parts = []
        for block in self.blocks:
            lo, hi = np.searchsorted(indices, [block.start, block.start + len(block.labels)])
            if hi > lo:
                parts.append(block.features.iloc[indices[lo:hi] - block.start])
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def load_streamed(cfg: DataConfig, spec: Optional[str | Path] = None) -> StreamedTable:
    """One pass over the rows: their labels and attack types, checked as :func:`~netad.data.loading.load_table`
    checks a training file."""
    blocks = RecordBlocks(cfg, spec)
    labels, types = [], []
    names: dict[str, str] = {}  # one string object per attack type: a row costs a pointer, not a string
    attack: set = set()
    for block in blocks:
        labels.append(block.labels.astype(np.int8))
        if block.types is not None:
            codes, distinct = pd.factorize(block.types)
            shared = np.array([names.setdefault(t, t) for t in distinct], dtype=object)
            types.append(shared[codes])
            attack.update(shared[np.unique(codes[block.labels == 1])])
    if not labels or not sum(len(b) for b in labels):
        raise UserError(f"data file has no rows: {blocks.spec}")
    y = np.concatenate(labels).astype(np.int64)
    classes = np.unique(y)
    if classes.size < 2:
        which = "normal" if classes[0] == 0 else "anomalous"
        raise UserError(f"label column '{cfg.label_column}' has only one class (all rows are {which}); need both")
    all_types = np.concatenate(types) if types else None
    if cfg.type_column is not None:  # the checks a whole training file gets
        if all_types is None:
            raise UserError(f"data.type_column '{cfg.type_column}' not found in {blocks.spec}")
        check_attack_types(attack, set(names), cfg, blocks.spec)
    return StreamedTable(None, y, blocks.spec, all_types, blocks=blocks)


def estimated_cells(spec: str | Path) -> int:
    """Rows times columns of what ``spec`` names: from Parquet metadata, or for CSV from the first MB's lines."""
    total = 0
    for path in data_files(spec):
        if path.stat().st_size and is_parquet(path):
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            total += meta.num_rows * meta.num_columns
            continue
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
        lines = head.count(b"\n") or 1
        columns = head.split(b"\n", 1)[0].count(b",") + 1
        total += int(path.stat().st_size / max(len(head), 1) * lines) * columns
    return total


def out_of_core(cfg: DataConfig, spec: Optional[str | Path] = None) -> bool:
    """``data.in_memory``: false, or auto and more than :data:`AUTO_CELLS` values."""
    if cfg.in_memory == "auto":
        return estimated_cells(spec or cfg.data_path) > AUTO_CELLS
    return not cfg.in_memory


def load_training_data(cfg: DataConfig) -> LabelledTable:
    """The training rows: in memory (:func:`~netad.data.loading.load_table`), or out of core (:func:`load_streamed`)
    as ``data.in_memory`` says."""
    from netad.data.loading import load_table

    return load_streamed(cfg) if out_of_core(cfg) else load_table(cfg)
