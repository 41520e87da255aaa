"""One progress bar per fit, advancing per epoch, with the validation numbers that matter."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback
from tqdm.auto import tqdm


class EpochProgressBar(Callback):
    """A compact bar: small tabular epochs take milliseconds, so per-batch bars are only noise."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar: Any = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.bar = tqdm(total=trainer.max_epochs, initial=trainer.current_epoch, desc=self.description,
                        unit="epoch", leave=True, dynamic_ncols=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        m = getattr(pl_module, "epoch_metrics", None) or trainer.callback_metrics
        shown = {k.split("/", 1)[1]: f"{float(m[k]):.3f}" for k in ("val/loss", "val/auroc", "val/f1") if k in m}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_exception = lambda self, trainer, pl_module, exc: self.on_train_end(trainer, pl_module)  # noqa: E731
