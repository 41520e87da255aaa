"""Toolkit overhead: k-fold x E-epoch CV with netad vs a plain PyTorch loop, same process, same data.

    python benchmarks/train_speed.py                       # NSL-KDD 20 %, 5 folds x 10 epochs, batch 256
    python benchmarks/train_speed.py --config config.yaml  # the bundled data set

All sides use the same folds, the same fold-fitted preprocessing, the same MLP, optimizer,
batch size, epochs and a validation pass per epoch. The toolkit side runs ``run_cv`` as a
user would (checkpoints, TensorBoard logs, metrics, threshold choice, out-of-fold results),
without the extras that have no plain-loop counterpart (permutation baseline, final model,
W&B, early stopping). A third contender, a minimal LightningModule on a bare Trainer (one
optimizer step per trainer step, automatic optimization), shows what Lightning's per-step
machinery costs when nothing is done about it. Timings alternate (the order rotates each repeat) and
the median is reported, wall time (the target) and this process's CPU time (fairer where other jobs
share the cores), with the ratio of each repeat; the result also goes to
``benchmarks/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from netad.config import load_config
from netad.data.datamodule import TensorBatchLoader
from netad.data.loading import load_table
from netad.data.preprocessing import TabularPreprocessor
from netad.data.splits import make_folds, split_test
from netad.models.mlp import MLP
from netad.training.cv import run_cv
from netad.training.fit import class_weights
from netad.threads import resolve_threads


TARGET = 1.3  # toolkit time / plain loop time (issue 2)


def _folds_and_tensors(cfg, table):
    """The same folds and fold-fitted preprocessing the toolkit uses."""
    cv = cfg.cross_validation
    dev, _ = split_test(table.labels, cfg.data.test_size, cv.random_state)
    folds = make_folds(dev, table.labels, cv.n_splits, cv.shuffle, cv.random_state, cv.stratify, cfg.data.val_size)
    for fold in folds:
        pre = TabularPreprocessor.from_config(cfg.data).fit(table.features.iloc[fold.train])
        tensors = {}
        for part in ("train", "val", "eval"):
            idx = getattr(fold, part)
            tensors[part] = (torch.from_numpy(pre.transform(table.features.iloc[idx])),
                             torch.from_numpy(table.labels[idx].astype(np.float32)))
        yield fold, pre, tensors


def plain_cv(cfg) -> list[float]:
    """The hand-written loop: what a careful user would write without any framework."""
    table = load_table(cfg.data)
    aurocs = []
    for fold, pre, tensors in _folds_and_tensors(cfg, table):
        torch.manual_seed(cfg.training.seed + fold.fold)
        model = MLP(pre.output_dim, cfg.model.hidden_dims, cfg.model.dropout, cfg.model.activation)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.training.learning_rate,
                               weight_decay=cfg.training.weight_decay)
        w = torch.tensor(class_weights(table.labels[fold.train], cfg.training.class_weight))
        x, y = tensors["train"]
        bs = cfg.training.batch_size
        for _epoch in range(cfg.training.num_epochs):
            model.train()
            perm = torch.randperm(len(y))
            xs, ys = x[perm], y[perm]
            for i in range(0, len(ys), bs):
                xb, yb = xs[i : i + bs], ys[i : i + bs]
                loss = F.binary_cross_entropy_with_logits(model(xb), yb, weight=w[yb.long()])
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                vx, vy = tensors["val"]
                F.binary_cross_entropy_with_logits(model(vx), vy, weight=w[vy.long()])
        with torch.no_grad():
            ex, ey = tensors["eval"]
            aurocs.append(roc_auc_score(ey.numpy(), torch.sigmoid(model(ex)).numpy()))
    return aurocs


class _MinimalModule(L.LightningModule):
    """The least a LightningModule can be: no metrics, threshold, checkpoints or logs."""

    def __init__(self, net: torch.nn.Module, lr: float, weight_decay: float, weights: torch.Tensor) -> None:
        super().__init__()
        self.net, self.lr, self.weight_decay, self.weights = net, lr, weight_decay, weights

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.binary_cross_entropy_with_logits(self.net(x), y, weight=self.weights[y.long()])

    def validation_step(self, batch, batch_idx):
        x, y = batch
        F.binary_cross_entropy_with_logits(self.net(x), y, weight=self.weights[y.long()])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def minimal_lightning_cv(cfg) -> list[float]:
    """Lightning's own floor: the plain loop's work run by a bare Trainer."""
    table = load_table(cfg.data)
    aurocs = []
    for fold, pre, tensors in _folds_and_tensors(cfg, table):
        L.seed_everything(cfg.training.seed + fold.fold, verbose=False)
        net = MLP(pre.output_dim, cfg.model.hidden_dims, cfg.model.dropout, cfg.model.activation)
        w = torch.tensor(class_weights(table.labels[fold.train], cfg.training.class_weight))
        module = _MinimalModule(net, cfg.training.learning_rate, cfg.training.weight_decay, w)
        trainer = L.Trainer(max_epochs=cfg.training.num_epochs, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0)
        bs = cfg.training.batch_size
        trainer.fit(module, TensorBatchLoader(*tensors["train"], bs, shuffle=True, seed=fold.fold),
                    TensorBatchLoader(*tensors["val"], max(bs, 4096)))
        with torch.no_grad():
            ex, ey = tensors["eval"]
            aurocs.append(roc_auc_score(ey.numpy(), torch.sigmoid(net.eval()(ex)).numpy()))
    return aurocs


def toolkit_cv(cfg, workdir: Path) -> list[float]:
    cfg = cfg.model_copy(deep=True)
    cfg.checkpoint.save_dir = str(workdir / "checkpoints")
    cfg.logging.tensorboard_dir = str(workdir / "tb")
    result = run_cv(cfg, run_name="bench", quiet=True)
    return [row["auroc"] for row in result.folds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/nsl_kdd.yaml")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = p.parse_args()
    cfg = load_config(args.config, [
        f"cross_validation.n_splits={args.folds}", f"training.num_epochs={args.epochs}",
        f"training.batch_size={args.batch_size}", "training.early_stopping_patience=null",
        "cross_validation.permutation_baseline=false", "cross_validation.train_final_model=false",
        "logging.use_wandb=false", "trainer.accelerator=cpu", "trainer.devices=1",
    ])
    torch.set_num_threads(resolve_threads(cfg.trainer.num_threads))  # every contender: the toolkit's thread count
    n_rows = len(load_table(cfg.data))
    print(f"data: {cfg.data.data_path} ({n_rows} rows), {args.folds} folds x {args.epochs} epochs, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    names = ("plain", "minimal_lightning", "toolkit")
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}  # this process's CPU time: fairer on a shared machine

    def timed(name: str, fn, *fn_args) -> list[float]:
        t0, c0 = time.perf_counter(), time.process_time()
        aucs = fn(*fn_args)
        wall[name].append(time.perf_counter() - t0)
        cpu[name].append(time.process_time() - c0)
        return aucs

    def run_toolkit() -> list[float]:
        work = Path(tempfile.mkdtemp(prefix="netad-bench-"))
        try:
            return toolkit_cv(cfg, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    contenders = {"plain": lambda: plain_cv(cfg), "minimal_lightning": lambda: minimal_lightning_cv(cfg),
                  "toolkit": run_toolkit}
    for r in range(args.repeats):
        # the order rotates, so that a machine slowing down or speeding up part way through favours no one
        order = names[r % 3:] + names[: r % 3]
        aucs = {name: timed(name, contenders[name]) for name in order}
        print(f"repeat {r + 1} ({', '.join(order)}): " + ", ".join(
            f"{name} {wall[name][-1]:.2f} s (cpu {cpu[name][-1]:.2f} s, AUROC {np.mean(aucs[name]):.4f})"
            for name in names) + f"; toolkit / plain {wall['toolkit'][-1] / wall['plain'][-1]:.2f}x")
    plain, mini, kit = (statistics.median(wall[n]) for n in names)
    cpu_plain, cpu_mini, cpu_kit = (statistics.median(cpu[n]) for n in names)
    per_repeat = [k / p for k, p in zip(wall["toolkit"], wall["plain"])]
    print(f"median: plain loop {plain:.2f} s, minimal LightningModule {mini:.2f} s ({mini / plain:.2f}x), "
          f"toolkit {kit:.2f} s")
    print(f"median CPU time: plain loop {cpu_plain:.2f} s, minimal LightningModule {cpu_mini:.2f} s "
          f"({cpu_mini / cpu_plain:.2f}x), toolkit {cpu_kit:.2f} s ({cpu_kit / cpu_plain:.2f}x)")
    print(f"toolkit / plain loop per repeat: {', '.join(f'{x:.2f}x' for x in per_repeat)}")
    ratio = kit / plain
    print(f"toolkit / plain loop: {ratio:.2f}x (target <= {TARGET:.1f}x: {'met' if ratio <= TARGET else 'NOT met'})")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "setup": {"config": args.config, "rows": n_rows, "folds": args.folds, "epochs": args.epochs,
                  "batch_size": args.batch_size, "repeats": args.repeats},
        "seconds": wall,
        "median_seconds": {"plain": plain, "minimal_lightning": mini, "toolkit": kit},
        "cpu_seconds": cpu,
        "median_cpu_seconds": {"plain": cpu_plain, "minimal_lightning": cpu_mini, "toolkit": cpu_kit},
        "toolkit_vs_plain": ratio, "toolkit_vs_plain_per_repeat": per_repeat, "toolkit_vs_plain_cpu": cpu_kit / cpu_plain, "target": TARGET,
        "met": ratio <= TARGET,
    }, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
