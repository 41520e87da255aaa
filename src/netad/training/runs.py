"""Run folders: where a run's fits live, which are finished, which rows each uses, and who may write.

Folder ``<checkpoint.save_dir>/<run>/``:
- ``config.yaml``   the exact config of the run (a resume reads it back; jobs joining the run must match it);
- ``splits.json``   the test hold-out and every fold's train / val / eval rows (a single split: its train / val);
- ``<fit>/``        a fit's checkpoints (best, last, every N epochs), ``result.json`` once it finished, and
                    ``.lock`` while a process trains it;
- ``manifest.json`` which fits are finished (derived from the ``result.json`` files).
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import yaml

from netad.config import Config, config_from_dict
from netad.data.loading import LabelledTable
from netad.data.sources import data_digest
from netad.data.splits import FoldSplit
from netad.errors import RunInterrupted, UserError
from netad.io import atomic_target, write_text_atomic
from netad.models.checkpoint import read_checkpoint
from netad.training.fit import FitResult
from netad.training.hardware import launched_world_size

#: the run name the first process of a DDP job hands to the processes Lightning starts for it
RUN_NAME_ENV = "NETAD_RUN_NAME"

# sections that may differ between jobs of one run (where logs go, which device) without changing results
_RUN_NEUTRAL = ("logging", "trainer", "huggingface", "detectors")


def write_json(path: Path, data: Any, compact: bool = False) -> None:
    """Indented for people; ``compact`` for files of long index and score lists (json indents those with its
    pure-Python encoder, one line per number: several times slower and larger)."""
    layout: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
    write_text_atomic(path, json.dumps(data, default=float, **layout))


def read_run_file(path: Path, kind: str) -> Any:
    """A run folder's JSON or YAML file; a damaged one (cut short, edited, not UTF-8) is one line."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is damaged ({first}); it is not the file netad wrote") from None
    if kind == "yaml" and not isinstance(data, dict):
        raise UserError(f"{path} is damaged (not a mapping of config sections); it is not the file netad wrote")
    return data


# ------------------------------------------------------------------- locks
class FoldLock:
    """Only one process trains a given fit: ``<fit>/.lock`` holds the owner's pid (stale locks are taken over)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path, self.name = folder / ".lock", name

    def __enter__(self) -> "FoldLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    owner = 0
                if owner and _alive(owner):
                    raise UserError(f"{self.name} is being trained by another process (pid {owner}); "
                                    f"wait for it, or delete {self.path} if that process is gone") from None
                self.path.unlink(missing_ok=True)  # its owner died: take it over
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise UserError(f"could not lock {self.path}")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -------------------------------------------------------------- run folder
@dataclass
class RunFolder:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def result_path(self, name: str) -> Path:
        return self.path / name / "result.json"

    def finished(self) -> list[str]:
        return sorted(p.parent.relative_to(self.path).as_posix() for p in self.path.glob("**/result.json"))

    def load_result(self, name: str) -> Optional[FitResult]:
        path = self.result_path(name)
        if not path.is_file():
            return None
        saved = read_run_file(path, "json")
        try:
            return FitResult(**saved)
        except TypeError:
            raise UserError(f"{path} is damaged (not a result netad wrote); delete it to train {name} again") from None

    def save_result(self, result: FitResult) -> None:
        """The fit's ``result.json``, then the manifest of every finished fit."""
        write_json(self.result_path(result.name), result.to_json(), compact=True)
        write_json(self.path / "manifest.json", {"run": self.name, "finished": self.finished(),
                                                 "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def last_checkpoint(self, name: str) -> Optional[Path]:
        last = self.path / name / "last.ckpt"
        if not last.is_file():
            return None
        try:  # a truncated or foreign file: one clear line, not a traceback from inside Lightning
            read_checkpoint(last)
        except UserError as exc:
            raise UserError(f"{exc}; delete it to train {name} again from the start") from None
        return last


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, leaving out the sections jobs of one run may set differently."""
    keys = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in _RUN_NEUTRAL:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def open_run(cfg: Config, run_name: str) -> RunFolder:
    """Create the run folder, or join an existing one (parallel --fold jobs) if its config is the same."""
    run = RunFolder(Path(cfg.checkpoint.save_dir) / run_name)
    snapshot = run.path / "config.yaml"
    if snapshot.is_file():
        saved = config_from_dict(read_run_file(snapshot, "yaml"), str(snapshot)).to_dict()
        differ = config_differences(saved, cfg.to_dict())
        if differ:
            raise UserError(f"run '{run_name}' already exists with a different config (differs in: "
                            f"{', '.join(differ[:5])}); use --resume {run.path} or a new --run-name")
        return run
    run.path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(snapshot, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run


def find_run(path: str | Path) -> tuple[RunFolder, Config]:
    """The run folder holding ``path`` (the folder itself or a checkpoint inside it) and its config."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--resume: no such run folder or checkpoint: {path}")
    for candidate in [path, *path.parents] if path.is_dir() else list(path.parents):
        if (candidate / "config.yaml").is_file() and (candidate / "splits.json").is_file():
            raw = read_run_file(candidate / "config.yaml", "yaml")
            return RunFolder(candidate), config_from_dict(raw, str(candidate / "config.yaml"))
    raise UserError(f"--resume: {path} is not inside a netad run folder (no config.yaml and splits.json)")


def run_metadata(cfg: Config, run: RunFolder, table: LabelledTable, test: np.ndarray) -> dict[str, Any]:
    """What every checkpoint of a run carries: where it came from and which rows are its test set."""
    return {"run_dir": str(run.path), "run_name": run.name, "data_path": table.source,
            "data_sha256": data_digest(table.source), "data_rows": len(table),
            "label_column": cfg.data.label_column, "normal_value": cfg.data.normal_value,
            # one tensor, not thousands of pickled ints: this is written with every checkpoint
            "test_indices": torch.from_numpy(test.astype(np.int64)), "config": cfg.to_dict()}


# ------------------------------------------------------------------ splits
@dataclass
class Splits:
    """The rows of a run: test hold-out, the development rows, and its folds (CV) or its train / val (a single
    split, whose ``folds`` is empty)."""

    dev: np.ndarray
    test: np.ndarray
    folds: list[FoldSplit]
    train: Optional[np.ndarray] = None
    val: Optional[np.ndarray] = None

    @property
    def cross_validated(self) -> bool:
        return bool(self.folds)


#: above this many rows a run's row lists go to ``splits.npz`` (numpy arrays) rather than into ``splits.json``
JSON_SPLIT_ROWS = 1_000_000


def save_splits(run: RunFolder, table: LabelledTable, splits: Splits) -> None:
    head = {"n_rows": len(table), "data_path": table.source, "data_sha256": data_digest(table.source)}
    single = {k: getattr(splits, k) for k in ("train", "val") if getattr(splits, k) is not None}
    if len(table) <= JSON_SPLIT_ROWS:
        write_json(run.path / "splits.json", {**head, "dev": splits.dev.tolist(), "test": splits.test.tolist(),
                                              "folds": [f.to_json() for f in splits.folds],
                                              **{k: v.tolist() for k, v in single.items()}}, compact=True)
        return
    arrays = {"dev": splits.dev, "test": splits.test, **single}
    for f in splits.folds:
        arrays.update({f"fold{f.fold}_{part}": getattr(f, part) for part in ("train", "val", "eval")})
    with atomic_target(run.path / "splits.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    write_json(run.path / "splits.json", {**head, "rows_file": "splits.npz", "dev": [], "test": [],
                                          "folds": [{"fold": f.fold} for f in splits.folds]})


def load_splits(run: RunFolder, table: LabelledTable) -> Splits:
    """The splits a run was made with; a resume must use the very same rows of the very same file."""
    path = run.path / "splits.json"
    saved = _splits_file(run)
    if saved.get("data_sha256") not in (None, data_digest(table.source)) or saved["n_rows"] != len(table):
        raise UserError(f"{table.source} has changed since run '{run.name}' was made on it: "
                        f"its splits no longer point at the same rows; start a new run")
    try:
        if saved.get("rows_file"):  # a large run's rows (save_splits)
            with np.load(run.path / saved["rows_file"]) as arrays:
                stored = {k: arrays[k] for k in arrays.files}
            saved = dict(saved, **{k: stored[k] for k in ("dev", "test", "train", "val") if k in stored},
                         folds=[dict(f, **{p: stored[f"fold{f['fold']}_{p}"] for p in ("train", "val", "eval")})
                                for f in saved["folds"]])
        rows = {k: np.asarray(saved[k], dtype=np.int64) for k in ("dev", "test", "train", "val") if k in saved}
        folds = [FoldSplit(int(f["fold"]), *(np.asarray(f[p], dtype=np.int64) for p in ("train", "val", "eval")))
                 for f in saved["folds"]]
        parts = [*rows.values(), *(getattr(f, p) for f in folds for p in ("train", "val", "eval"))]
        if any(len(a) and (a.min() < 0 or a.max() >= len(table)) for a in parts):
            raise ValueError("row numbers outside the data")
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is damaged ({exc}): the run's splits are lost; start a new run") from None
    return Splits(rows["dev"], rows["test"], folds, rows.get("train"), rows.get("val"))


def _splits_file(run: RunFolder) -> dict[str, Any]:
    path = run.path / "splits.json"
    saved = read_run_file(path, "json")
    if not isinstance(saved, dict) or not {"n_rows", "folds", "dev", "test"} <= set(saved):
        raise UserError(f"{path} is damaged (keys missing): the run's splits are lost; start a new run")
    return saved


def is_cv_run(run: RunFolder) -> bool:
    return bool(_splits_file(run)["folds"])


# --------------------------------------------------------------- run names
def new_run_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def choose_run_name(given: Optional[str], prefix: str) -> str:
    """``given``, else the name the first process of a DDP job handed down, else a new time-stamped one."""
    name = given or os.environ.get(RUN_NAME_ENV)
    if name:
        return name
    if launched_world_size() > 1:  # torchrun / srun start every process at once: they cannot agree on a time stamp
        raise UserError("a distributed launch (torchrun, srun) needs --run-name NAME, the same for every process")
    return new_run_name(prefix)


@contextmanager
def shared_run_name(name: str) -> Iterator[None]:
    """While a run trains, processes started for it (Lightning's DDP launcher) inherit its name."""
    before = os.environ.get(RUN_NAME_ENV)
    os.environ[RUN_NAME_ENV] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUN_NAME_ENV, None)
        else:
            os.environ[RUN_NAME_ENV] = before


@contextmanager
def resumable(run: RunFolder) -> Iterator[None]:
    """Ctrl-C or SIGTERM inside a run: an interrupt that names the folder ``--resume`` continues."""
    try:
        yield
    except RunInterrupted:
        raise
    except KeyboardInterrupt as exc:
        raise RunInterrupted(run.path) from exc
