"""Where Lightning trains: the ``trainer`` config section resolved into Trainer arguments.

- ``accelerator: auto`` trains on a CUDA GPU when PyTorch sees one (Apple's MPS next), else on the CPU;
  asking for a GPU that is not there is a one-line error, not a Lightning traceback.
- ``precision``: ``32-true`` everywhere; ``16-mixed`` needs a GPU (float16 autocast is a GPU feature): with
  ``accelerator: cpu`` it is refused, with ``auto`` on a machine without a GPU the fit runs in ``32-true``
  and says so once; ``bf16-mixed`` runs on CPUs and GPUs.
- ``strategy: ddp``, ``devices`` and ``num_nodes`` go to Lightning unchanged (one process per device,
  launched by Lightning itself, ``torchrun`` or SLURM).

It also answers which process of a distributed launch this is (:func:`is_primary_process`), from the
environment the launchers set, before any Trainer exists: only the primary process writes run files.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from netad.config import TrainerConfig
from netad.errors import UserError
from netad.threads import AUTO_THREADS, limit_threads, resolve_threads  # noqa: F401 (the trainer's settings)

Warn = Callable[[str], None]


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_accelerator(tc: TrainerConfig) -> str:
    """'gpu', 'mps' or 'cpu' for ``trainer.accelerator``; a missing GPU is a UserError."""
    wanted = tc.accelerator
    if wanted in ("gpu", "cuda"):
        if not cuda_available():
            raise UserError(f"trainer.accelerator={wanted}: PyTorch sees no CUDA GPU here "
                            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                            f"use trainer.accelerator=auto or cpu")
        return "gpu"
    if wanted == "mps":
        if not mps_available():
            raise UserError("trainer.accelerator=mps: no Apple MPS device here; use trainer.accelerator=auto or cpu")
        return "mps"
    if wanted == "auto":
        return "gpu" if cuda_available() else "mps" if mps_available() else "cpu"
    return "cpu"


def _bf16_native() -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch: no emulation argument
        return bool(torch.cuda.is_bf16_supported())


def resolve_precision(tc: TrainerConfig, accelerator: str, warn: Warn) -> str:
    """The precision Lightning gets on ``accelerator`` (see the module docstring)."""
    precision = tc.precision
    if precision == "16-mixed" and accelerator == "cpu":
        if tc.accelerator == "cpu":
            raise UserError("trainer.precision=16-mixed needs a GPU (float16 autocast is a GPU feature); "
                            "with trainer.accelerator=cpu use 32-true or bf16-mixed")
        warn("trainer.precision=16-mixed needs a GPU and none was found: training on the CPU in 32-true "
             "(bf16-mixed is the CPU's mixed precision)")
        return "32-true"
    if precision == "bf16-mixed" and accelerator == "gpu" and not _bf16_native():
        warn(f"trainer.precision=bf16-mixed: {torch.cuda.get_device_name()} has no native bfloat16 support "
             f"(compute capability below 8.0); 16-mixed is this GPU's fast mixed precision")
    return precision


def trainer_arguments(tc: TrainerConfig, warn: Warn) -> dict[str, Any]:
    """Keyword arguments for ``lightning.Trainer`` from the ``trainer`` section."""
    accelerator = resolve_accelerator(tc)
    return {
        "accelerator": accelerator,
        "devices": tc.devices,
        "strategy": tc.strategy,
        "num_nodes": tc.num_nodes,
        "precision": resolve_precision(tc, accelerator, warn),
        # bit-exact on the CPU; on GPUs the few CUDA kernels without a deterministic version warn instead of
        # stopping the run (Lightning sets CUBLAS_WORKSPACE_CONFIG for the rest)
        "deterministic": True if accelerator == "cpu" else "warn",
    }


def describe(tc: TrainerConfig) -> str:
    return (f"accelerator={tc.accelerator}, devices={tc.devices}, strategy={tc.strategy}, "
            f"num_nodes={tc.num_nodes}, precision={tc.precision}")


def is_primary_process() -> bool:
    """False in every process of a distributed launch but global rank 0.

    The launchers say so in the environment: ``RANK`` (torchrun), ``SLURM_PROCID`` (srun with several
    tasks), ``NODE_RANK`` / ``LOCAL_RANK`` (the processes Lightning starts for ``strategy: ddp``).
    """
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]) == 0
    return int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")) or 0) == 0 and int(env.get("LOCAL_RANK", "0") or 0) == 0


def launched_world_size() -> int:
    """Processes started together by an outside launcher (torchrun, srun); 1 otherwise."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["WORLD_SIZE"])
    if "SLURM_PROCID" in env:
        return int(env.get("SLURM_NTASKS", "1") or 1)
    return 1
