"""Trainer placement: accelerator, precision and DDP settings; which process writes; batches on the device."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import fast_config
from netad.config import TrainerConfig, load_config
from netad.data.datamodule import NetworkDataModule, TensorBatchLoader
from netad.errors import UserError
from netad.training import hardware
from netad.training.hardware import is_primary_process, resolve_accelerator, trainer_arguments


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(hardware, "cuda_available", lambda: False)
    monkeypatch.setattr(hardware, "mps_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with a CUDA GPU without native bfloat16 (a T4, say), as far as the resolution can tell."""
    monkeypatch.setattr(hardware, "cuda_available", lambda: True)
    monkeypatch.setattr(hardware, "_bf16_native", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")


def resolve(warnings: list[str], **settings) -> dict:
    return trainer_arguments(TrainerConfig(**settings), warn=warnings.append)


# ------------------------------------------------------------------ precision and accelerator
def test_16_mixed_on_the_cpu_is_refused_when_asked_for_and_falls_back_under_auto(no_gpu):
    said: list[str] = []
    with pytest.raises(UserError, match="16-mixed needs a GPU.*use 32-true or bf16-mixed"):
        resolve(said, accelerator="cpu", precision="16-mixed")
    args = resolve(said, accelerator="auto", precision="16-mixed")
    assert args["accelerator"] == "cpu" and args["precision"] == "32-true" and args["deterministic"] is True
    assert len(said) == 1 and "none was found: training on the CPU in 32-true" in said[0]
    for precision in ("32", "32-true", "bf16-mixed", "64-true"):  # what the CPU does run, unchanged
        assert resolve(said, accelerator="cpu", precision=precision)["precision"] == precision
    assert len(said) == 1


def test_auto_takes_the_gpu_and_keeps_16_mixed(one_gpu):
    said: list[str] = []
    args = resolve(said, accelerator="auto", precision="16-mixed", strategy="ddp", devices=4, num_nodes=2)
    assert args == {"accelerator": "gpu", "devices": 4, "strategy": "ddp", "num_nodes": 2, "precision": "16-mixed",
                    "deterministic": "warn"}
    assert said == []
    assert resolve(said, accelerator="cuda", precision="bf16-mixed")["precision"] == "bf16-mixed"
    assert len(said) == 1 and "Tesla T4 has no native bfloat16" in said[0] and "16-mixed" in said[0]


def test_a_gpu_asked_for_but_missing_is_one_clear_error(no_gpu):
    for accelerator in ("gpu", "cuda"):
        with pytest.raises(UserError, match=f"trainer.accelerator={accelerator}: PyTorch sees no CUDA GPU"):
            resolve_accelerator(TrainerConfig(accelerator=accelerator))
    with pytest.raises(UserError, match="no Apple MPS device"):
        resolve_accelerator(TrainerConfig(accelerator="mps"))
    assert resolve_accelerator(TrainerConfig(accelerator="auto")) == "cpu"


def test_trainer_keys_are_validated(tmp_path):
    assert load_config(None, ["trainer.precision=32"]).trainer.precision == "32"
    assert load_config(None, []).trainer.devices == 1  # one device unless more are asked for
    cases = {
        "trainer.strategy=fsdp": "trainer.strategy",
        "trainer.num_nodes=0": ">= 1",
        "trainer.devices=0": "-1 (all)",
        "trainer.devices=[0, 0]": "distinct GPU indices",
        "trainer.accelerator=tpu": "trainer.accelerator",
        "trainer.precision=16": "trainer.precision",
    }
    for override, needle in cases.items():
        with pytest.raises(UserError) as err:
            load_config(None, [override])
        assert needle in str(err.value) and "\n" not in str(err.value), override


def test_cli_refuses_16_mixed_on_the_cpu_in_one_line_before_writing(tmp_path, csv_path, capsys, no_gpu):
    from netad.cli import train_main

    cfg = fast_config(tmp_path, csv_path)
    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(cfg.to_dict()))
    code = train_main(["--config", str(config), "--use-cv", "--quiet", "--set", "trainer.precision=16-mixed"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: trainer.precision=16-mixed needs a GPU") and "\n" not in err
    assert not (tmp_path / "checkpoints").exists()


def test_lightning_refusals_become_one_line_errors(tmp_path, csv_path):
    from netad.training.cv import run_single

    cfg = fast_config(tmp_path, csv_path, trainer__devices="[0, 1]")  # GPU indices on the CPU
    with pytest.raises(UserError, match=r"^trainer settings \(accelerator=cpu, devices=\[0, 1\].*\): .+") as err:
        run_single(cfg, run_name="r", quiet=True)
    assert "\n" not in str(err.value)


def test_auto_16_mixed_trains_on_the_cpu_and_bf16_mixed_runs_there(tmp_path, csv_path, caplog, no_gpu):
    from netad.data.loading import load_table
    from netad.models.checkpoint import read_checkpoint
    from netad.training.fit import _already_warned, fit_split

    cfg = fast_config(tmp_path, csv_path, trainer__accelerator="auto", trainer__precision="16-mixed",
                      training__num_epochs="2")
    table = load_table(cfg.data)
    idx = np.arange(len(table))
    _already_warned.difference_update({m for m in _already_warned if "16-mixed" in m})  # said by an earlier test
    with caplog.at_level(logging.WARNING, logger="netad"):
        for k in range(2):  # said once for all the fits of a run
            result = fit_split(cfg, table, idx[:200], idx[200:], tmp_path / f"a{k}", name="a", run_name="r")
    notes = [r.getMessage() for r in caplog.records if "16-mixed needs a GPU" in r.getMessage()]
    assert len(notes) == 1
    weight = read_checkpoint(result.checkpoint)["state_dict"]["model.net.0.weight"]
    assert weight.dtype == torch.float32 and np.isfinite(result.val_metrics["auroc"])

    bf16 = fast_config(tmp_path, csv_path, trainer__precision="bf16-mixed", training__num_epochs="2")
    res = fit_split(bf16, table, idx[:200], idx[200:], tmp_path / "b", name="b", run_name="r", quiet=True)
    assert np.isfinite(res.val_metrics["auroc"]) and 0.0 <= res.threshold <= 1.0


# ------------------------------------------------------------------ distributed launches
@pytest.mark.parametrize("env, primary", [
    ({}, True),
    ({"RANK": "0", "WORLD_SIZE": "4"}, True),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}, False),   # torchrun, second machine
    ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, False),                 # started by Lightning's DDP launcher
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
    ({"LOCAL_RANK": "0", "NODE_RANK": "0", "WORLD_SIZE": "2"}, True),
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5"}, False),            # srun
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}, True),
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, True),             # one job of a SLURM array
])
def test_which_process_writes(monkeypatch, env, primary):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_primary_process() is primary


def test_an_outside_launch_needs_a_run_name(tmp_path, csv_path, monkeypatch):
    from netad.training.cv import run_cv

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("NETAD_RUN_NAME", raising=False)
    with pytest.raises(UserError, match="needs --run-name NAME, the same for every process"):
        run_cv(fast_config(tmp_path, csv_path), quiet=True)
    assert not (tmp_path / "checkpoints").exists()


def test_ddp_shards_cover_each_epoch_once_with_equal_batch_counts():
    n, batch = 23, 4
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    for world in (2, 3, 4):
        loaders = [TensorBatchLoader(x, x[:, 0], batch, shuffle=True, seed=7, rank=r, world_size=world)
                   for r in range(world)]
        epochs = []
        for epoch in (0, 1):
            seen = []
            for loader in loaders:
                loader.sampler.set_epoch(epoch)
                rows = torch.cat([b for _, b in loader]).long().tolist()
                assert len(rows) == -(-n // world) and len(list(loader)) == len(loader)  # equal shares, padded
                seen.append(rows)
            flat = [r for rows in seen for r in rows]
            assert set(flat) == set(range(n)) and len(flat) - n == (-n) % world  # all rows, padding only
            epochs.append(seen)
        assert epochs[0] != epochs[1]  # a new order every epoch
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        TensorBatchLoader(x, x[:, 0], batch, rank=2, world_size=2)
    # one process: exactly the loader it always was
    single = TensorBatchLoader(x, x[:, 0], batch, shuffle=True, seed=7)
    assert torch.equal(torch.cat([b for _, b in single]), x[single.sampler.order(), 0])


def test_tensors_are_placed_on_the_training_device_once(tmp_path, csv_path):
    cfg = fast_config(tmp_path, csv_path)
    rows = np.arange(300)
    dm = NetworkDataModule(cfg, rows[:150], rows[150:220], rows[220:], seed=1)
    with pytest.warns(UserWarning, match="constant in the training rows"):
        dm.setup("fit")
    device = torch.device("meta")  # stands in for a GPU: a device that is not the CPU
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=device), global_rank=1, world_size=2)
    train, again, val = dm.train_dataloader(), dm.train_dataloader(), dm.val_dataloader()
    assert train.x.device == device and train.x is again.x  # copied once, reused by every later loader
    assert train.world_size == 2 and train.rank == 1 and len(train) == 3  # 75 of 150 rows in batches of 32
    assert val.world_size == 1 and val.x.shape[0] == 70  # every process validates on all rows
    # under DDP one batch per trainer step (each backward pass needs its own forward pass through the wrapper)
    assert train.steps_per_item == 1
    assert all(xb.device == device and yb.device == device for (xb, yb), in train)
    assert dm.tensors["train"][0].device.type == "cpu"  # the host copy stays for scoring and novelty fitting

    from netad.models.classifier import AnomalyClassifier

    batch = next(iter(val))
    module = AnomalyClassifier(input_dim=dm.input_dim, hidden_dims=[4])
    moved = module.transfer_batch_to_device(batch, device, 0)  # Lightning's own hook
    assert all(m is b for m, b in zip(moved, batch))  # on the device already: no copy per step


# ------------------------------------------------------------------ threads
def test_num_threads_is_validated():
    assert load_config(None, ["trainer.num_threads=auto"]).trainer.num_threads == "auto"
    assert load_config(None, ["trainer.num_threads=3"]).trainer.num_threads == 3
    for bad in ("0", "-2", "many", "true", "5000"):
        with pytest.raises(UserError, match="trainer.num_threads"):
            load_config(None, [f"trainer.num_threads={bad}"])


def test_limit_threads_holds_torch_and_blas_pools_and_restores_them():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    with hardware.limit_threads("auto") as n:
        assert n == hardware.AUTO_THREADS == torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    with hardware.limit_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("setting", ["auto", 2])
def test_training_runs_with_the_configured_threads(tmp_path, csv_path, setting):
    from lightning.pytorch.callbacks import Callback

    from netad.training.cv import run_cv

    seen: list[int] = []

    class Threads(Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    cfg = fast_config(tmp_path, csv_path, trainer__num_threads=str(setting), training__num_epochs="1",
                      cross_validation__n_splits="2", cross_validation__train_final_model="false")
    run_cv(cfg, run_name="threads", quiet=True, extra_callbacks=lambda _name: [Threads()])
    assert seen == [hardware.resolve_threads(setting)] * 2
    assert torch.get_num_threads() == before
