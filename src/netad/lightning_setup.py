"""Lightning's informational chatter, silenced once for every fit the package runs."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """'GPU available: ...', 'TPU available: ...' and worker advice repeat for every fold and detector."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*smaller than the logging interval.*",
                    # in-memory batches need no worker processes
                    ".*does not have many workers.*",
                    ".*LeafSpec.*is deprecated.*",
                    # DDP: Lightning's all_gather calls a function torch deprecated; the epoch-level values every
                    # process computes on all validation rows need no sync_dist
                    ".*torch.distributed.nn.functional.all_gather is deprecated.*",
                    ".*when logging on epoch level in distributed setting.*",
                    # a fold folder holds the fold lock and, on resume, the checkpoints being continued
                    ".*Checkpoint directory .* exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=message)
