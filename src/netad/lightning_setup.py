"""Lightning's informational chatter, silenced once for every fit the package runs."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """'GPU available: ...', 'TPU available: ...' and worker advice repeat for every fold and detector."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*smaller than the logging interval.*", ".*does not have many workers.*",
                    ".*isn't a `torch.utils.data.DataLoader`.*", ".*LeafSpec.*is deprecated.*",
                    ".*overridden `transfer_batch_to_device`.*"):
        warnings.filterwarnings("ignore", message=message)
