"""``train.py --use-cv --engine ray``: each fold, with its permutation baseline, a task on the Ray cluster; then
the final model and the run's files in this process.

This process opens the run as ``train.py --use-cv`` does (splits, leakage check, run folder). Each task is then
what a job of a job array is, ``train.py --use-cv --resume RUN --fold K``: it runs in a fresh worker process
(``max_calls=1``: fresh state per fold) started in this process's working folder, so relative paths in the
config name the same files, and it writes into the same run folder. A shared file system that every node sees
at the same paths is assumed; a task that finds neither the folder nor the run says so in one line. A task
that fails (its worker crashed, its node went away, an error that is not bad input) is retried up to
:data:`RETRIES` times and continues from the fold's ``last.ckpt``. When every fold is done, this process
gathers (``--gather``): fold table, baselines, final model, ``cv_results.json``. An interrupted run is resumed
with ``--resume RUN``, with Ray or without.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Optional

from netad.config import Config
from netad.data.sources import data_files
from netad.errors import UserError
from netad.ray_cluster import cluster_cpus, connect, largest_node, task_error_line
from netad.threads import resolve_threads
from netad.training.cv import Training, cross_validate_run, run_cv, unfinished_folds
from netad.training.report import CVResult
from netad.training.runs import find_run

#: times a failed fold task is tried again
RETRIES = 2


def fold_job(cwd: str, run_path: str, fold: int) -> Optional[str]:
    """One fold and its permutation baseline, in a Ray worker; None when done, else a bad-input error's line
    (not retried: another try would fail alike). Other errors raise, and Ray tries the task again."""
    host = socket.gethostname()
    shared = "--engine ray needs the run folder and the data on a shared file system at the same paths on every node"
    if not os.path.isdir(cwd):
        return f"the working folder {cwd} does not exist on node {host}: {shared}"
    os.chdir(cwd)
    if not (Path(run_path) / "splits.json").is_file():
        return f"the run folder {Path(cwd) / run_path} is not visible on node {host}: {shared}"
    try:
        run_cv(None, resume=run_path, only_fold=fold, quiet=True)
    except UserError as exc:
        return str(exc)
    return None


def check_engine_config(cfg: Config) -> None:
    """What a fold task cannot train: one model over several processes or devices."""
    if cfg.trainer.strategy == "ddp":
        raise UserError("--engine ray trains each fold as one task: trainer.strategy ddp (one model over several "
                        "processes) does not apply; pick one of them")
    if cfg.trainer.devices not in (1, "auto") and cfg.trainer.devices != [0]:
        raise UserError(f"--engine ray gives each fold task one device: trainer.devices {cfg.trainer.devices} "
                        f"does not apply (set it to 1; Ray spreads the folds over the GPUs)")


def task_options(cfg: Config, node: dict[str, float]) -> dict[str, Any]:
    """A fold task's resources: ``trainer.num_threads`` CPUs, and a GPU when the trainer would use one (``auto``:
    when the cluster has GPUs; Ray hides the other GPUs from the task). ``node``: the largest node's resources;
    a task no node can hold is refused here (Ray would wait for one forever)."""
    cpus = resolve_threads(cfg.trainer.num_threads)
    accelerator = cfg.trainer.accelerator
    gpus = 1 if accelerator in ("gpu", "cuda") or (accelerator == "auto" and node["GPU"] >= 1) else 0
    if cpus > node["CPU"]:
        raise UserError(f"trainer.num_threads {cpus}: no node of the Ray cluster has {cpus} CPUs (the largest has "
                        f"{node['CPU']:g}); lower it")
    if gpus > node["GPU"]:
        raise UserError(f"trainer.accelerator {accelerator}: the Ray cluster has no GPU; use trainer.accelerator "
                        f"auto or cpu")
    return dict(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=True)


def run_cv_ray(cfg: Optional[Config], *, run_name: Optional[str] = None, resume: Optional[str | Path] = None,
               quiet: bool = False) -> Optional[CVResult]:
    """Cross-validate ``cfg`` (or continue the run ``resume`` points into) with its folds as Ray tasks; returns
    what :func:`~netad.training.cv.run_cv` returns."""
    run_cfg = cfg if cfg is not None else find_run(resume)[1]  # a resume: the run's own config
    check_engine_config(run_cfg)  # before a cluster starts: the config's own errors
    data_files(run_cfg.data.data_path)
    ray = connect()  # no Ray, or no cluster: said before the data is read
    options = task_options(run_cfg, largest_node(ray))
    t = Training.open(cfg, cross_validate=True, run_name=run_name, resume=resume, quiet=quiet)
    pending = unfinished_folds(t)
    job = ray.remote(max_calls=1)(fold_job).options(**options)
    cwd = os.getcwd()
    with t.active():
        refs = {job.remote(cwd, str(t.run.path), k): k for k in pending}
        if pending:
            t.say(f"{len(pending)} fold{'s' if len(pending) > 1 else ''} as Ray tasks on a cluster of "
                  f"{cluster_cpus(ray)} CPUs")
        waiting = list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                _finished(ray, t, refs[done[0]], done[0])
        except BaseException:  # an error or Ctrl-C: the folds still running stop; --resume continues them
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
    return cross_validate_run(t, gather=True)


def _finished(ray: Any, t: Training, fold: int, ref: Any) -> None:
    try:
        problem = ray.get(ref)
    except ray.exceptions.RayError as exc:
        raise UserError(f"fold {fold} failed on Ray after {RETRIES + 1} tries ({task_error_line(exc)}); resume "
                        f"with --resume {t.run.path}") from None
    if problem is not None:
        raise UserError(f"fold {fold}: {problem}")
    result = t.run.load_result(f"fold_{fold}")
    if result is None:
        raise UserError(f"fold {fold} finished on Ray, but its result is not in {t.run.path}: the workers wrote "
                        f"into a folder this machine does not see (--engine ray needs a shared file system)")
    t.say(f"fold_{fold} done: ROC AUC {result.eval_metrics['auroc']:.3f}")
