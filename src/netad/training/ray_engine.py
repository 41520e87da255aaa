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
from netad.ray_cluster import cluster_cpus, connect
from netad.threads import resolve_threads
from netad.training.cv import Training, cross_validate_run, run_cv, unfinished_folds
from netad.training.report import CVResult

#: times a failed fold task is tried again
RETRIES = 2
_UNSEEN = "unseen: "


def fold_job(cwd: str, run_path: str, fold: int) -> Optional[str]:
    """One fold and its permutation baseline, in a Ray worker; None when done, else a bad-input error's line
    (not retried: another try would fail alike). Other errors raise, and Ray tries the task again."""
    host = socket.gethostname()
    if not os.path.isdir(cwd):
        return f"{_UNSEEN}the working folder {cwd} does not exist on node {host}"
    os.chdir(cwd)
    if not (Path(run_path) / "splits.json").is_file():
        return f"{_UNSEEN}the run folder {Path(cwd) / run_path} is not visible on node {host}"
    try:
        run_cv(None, resume=run_path, only_fold=fold, quiet=True)
    except UserError as exc:
        return str(exc)
    return None


def _task_options(cfg: Config) -> dict[str, Any]:
    gpu = cfg.trainer.accelerator in ("gpu", "cuda")
    return dict(num_cpus=resolve_threads(cfg.trainer.num_threads), num_gpus=1 if gpu else 0,
                max_retries=RETRIES, retry_exceptions=True)


def run_cv_ray(cfg: Optional[Config], *, run_name: Optional[str] = None, resume: Optional[str | Path] = None,
               quiet: bool = False) -> Optional[CVResult]:
    """Cross-validate ``cfg`` (or continue the run ``resume`` points into) with its folds as Ray tasks; returns
    what :func:`~netad.training.cv.run_cv` returns."""
    if cfg is not None:  # before a cluster starts: the config's own errors
        if cfg.trainer.strategy == "ddp":
            raise UserError("--engine ray trains each fold as one task: trainer.strategy ddp (one model over "
                            "several processes) does not apply; pick one of them")
        data_files(cfg.data.data_path)
    ray = connect()  # no Ray, or no cluster: said before the data is read
    t = Training.open(cfg, cross_validate=True, run_name=run_name, resume=resume, quiet=quiet)
    pending = unfinished_folds(t)
    job = ray.remote(max_calls=1)(fold_job).options(**_task_options(t.cfg))
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
        line = next((x for x in str(exc).splitlines() if x.strip()), type(exc).__name__)
        raise UserError(f"fold {fold} failed on Ray after {RETRIES + 1} tries ({line.strip()}); resume with "
                        f"--resume {t.run.path}") from None
    if problem is not None and problem.startswith(_UNSEEN):
        raise UserError(f"fold {fold}: {problem[len(_UNSEEN):]}: --engine ray needs the run folder and the data "
                        f"on a shared file system at the same paths on every node")
    if problem is not None:
        raise UserError(f"fold {fold}: {problem}")
    result = t.run.load_result(f"fold_{fold}")
    if result is None:
        raise UserError(f"fold {fold} finished on Ray, but its result is not in {t.run.path}: the workers wrote "
                        f"into a folder this machine does not see (--engine ray needs a shared file system)")
    t.say(f"fold_{fold} done: ROC AUC {result.eval_metrics['auroc']:.3f}")
