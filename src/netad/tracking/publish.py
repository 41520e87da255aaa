"""Send evaluation numbers, figures and tables to TensorBoard and, when enabled, Weights & Biases."""

from __future__ import annotations

import io
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from matplotlib.figure import Figure

from netad.config import Config


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _png(fig: Figure) -> Any:
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf)


def publish(
    cfg: Config,
    *,
    kind: str,
    name: str,
    group: Optional[str] = None,
    scalars: Optional[dict[str, float]] = None,
    figures: Optional[dict[str, Figure]] = None,
    tables: Optional[dict[str, tuple[Sequence[str], Sequence[Sequence[Any]]]]] = None,
) -> dict[str, str]:
    """Log to ``<tensorboard_dir>/<kind>/<name>-<time>`` and to a W&B run (job type ``kind``).

    Returns where things went: ``{"tensorboard": dir, "wandb": dir}`` (W&B only when enabled).
    """
    from torch.utils.tensorboard import SummaryWriter

    from netad.tracking.loggers import resolve_wandb_mode  # it imports Lightning: only when publishing

    scalars = {k: v for k, v in (scalars or {}).items() if v is not None and not math.isnan(v)}
    figures, tables = figures or {}, tables or {}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tb_dir = Path(cfg.logging.tensorboard_dir) / kind / f"{safe_name(name)}-{stamp}"
    writer = SummaryWriter(log_dir=str(tb_dir))
    try:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, 0)
        for tag, fig in figures.items():
            writer.add_figure(tag, fig, 0, close=False)
        for tag, (columns, rows) in tables.items():
            writer.add_text(tag, _markdown_table(columns, rows), 0)
    finally:
        writer.close()
    where = {"tensorboard": str(tb_dir)}

    mode = resolve_wandb_mode(cfg)
    if mode:
        import wandb

        Path(cfg.logging.wandb_dir).mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=cfg.logging.wandb_project, entity=cfg.logging.wandb_entity, group=group,
                         name=f"{name}/{kind}", job_type=kind, dir=cfg.logging.wandb_dir, mode=mode,
                         reinit="finish_previous")
        try:
            payload: dict[str, Any] = dict(scalars)
            payload.update({tag: wandb.Image(_png(fig)) for tag, fig in figures.items()})
            payload.update({tag: wandb.Table(columns=list(cols), data=[list(r) for r in rows])
                            for tag, (cols, rows) in tables.items()})
            run.log(payload)
            run.summary.update(scalars)
            where["wandb"] = run.dir
        finally:
            run.finish()
    return where
