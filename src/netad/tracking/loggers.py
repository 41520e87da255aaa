"""TensorBoard always; Weights & Biases when enabled, offline when no API key is set up."""

from __future__ import annotations

import logging
import math
import netrc
import os
import warnings
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.loggers import Logger, TensorBoardLogger

from netad.config import Config
from netad.errors import NetadWarning

log = logging.getLogger("netad")


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(cfg: Config) -> Optional[str]:
    """'online', 'offline' or None (W&B off). Online without credentials falls back to offline."""
    if not cfg.logging.use_wandb or cfg.logging.wandb_mode == "disabled":
        return None
    if cfg.logging.wandb_mode == "online" and not wandb_has_credentials():
        warnings.warn(NetadWarning("no W&B API key configured: logging to W&B offline (sync later with `wandb sync`)"),
                      stacklevel=2)
        return "offline"
    return cfg.logging.wandb_mode


def silence_wandb() -> None:
    """With WANDB_SILENT set (the CLI sets it), W&B's own notes stay off the terminal: the variable alone
    does not cover what W&B says while it checks its settings (Lightning passes ``anonymous=None``, which
    W&B answers with a deprecation note on every run)."""
    if os.environ.get("WANDB_SILENT", "").lower() in ("1", "true"):
        import wandb

        wandb.setup(settings=wandb.Settings(silent=True))


def build_loggers(cfg: Config, run_name: str, version: str, job_type: str = "fold",
                  hparams: Optional[dict[str, Any]] = None) -> list[Logger]:
    loggers: list[Logger] = [
        TensorBoardLogger(save_dir=cfg.logging.tensorboard_dir, name=run_name, version=version,
                          default_hp_metric=False)
    ]
    mode = resolve_wandb_mode(cfg)
    if mode:
        from lightning.pytorch.loggers import WandbLogger

        silence_wandb()
        save_dir = Path(cfg.logging.wandb_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        wb = WandbLogger(
            project=cfg.logging.wandb_project,
            entity=cfg.logging.wandb_entity,
            group=run_name,
            name=f"{run_name}/{version}",
            job_type=job_type,
            save_dir=str(save_dir),
            mode=mode,
            config=hparams or cfg.to_dict(),
            log_model=False,
        )
        loggers.append(wb)
    return loggers


def log_metrics(loggers: list[Logger], metrics: dict[str, float], step: int) -> None:
    """Metrics computed outside a trainer loop (a split's held-out rows), sent to every logger.

    Undefined values (AUROC of one-class rows) are left out, as the trainer loops leave them out.
    """
    defined = {k: float(v) for k, v in metrics.items() if not math.isnan(float(v))}
    for lg in loggers:
        lg.log_metrics(defined, step=step)
        lg.save()


def finish_loggers(loggers: list[Logger]) -> None:
    """Close every logger; W&B runs are finished even when training failed."""
    for lg in loggers:
        try:
            lg.finalize("success")
        except Exception:  # noqa: BLE001 - closing must not hide the original error
            pass
        experiment = getattr(lg, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()


def log_wandb_summary(cfg: Config, run_name: str, summary: dict[str, Any], fold_rows: list[dict[str, Any]]) -> Optional[str]:
    """One W&B run (job_type 'summary') in the CV group with the fold table and mean/std."""
    mode = resolve_wandb_mode(cfg)
    if not mode:
        return None
    import wandb

    run = wandb.init(project=cfg.logging.wandb_project, entity=cfg.logging.wandb_entity, group=run_name,
                     name=f"{run_name}/summary", job_type="summary", dir=cfg.logging.wandb_dir, mode=mode,
                     config=cfg.to_dict(), reinit="finish_previous")
    try:
        columns = list(fold_rows[0].keys())
        run.log({"cv/folds": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in fold_rows])})
        for key, stats in summary.items():
            run.summary[f"cv/{key}_mean"] = stats["mean"]
            run.summary[f"cv/{key}_std"] = stats["std"]
        return run.dir
    finally:
        run.finish()
