"""The MLP, the optimizer/scheduler wiring of AnomalyClassifier, and checkpoint reading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netad.errors import UserError
from netad.models.checkpoint import read_checkpoint
from netad.models.classifier import AnomalyClassifier
from netad.models.mlp import ACTIVATIONS, MLP

# ------------------------------------------------------------------ MLP


@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_output_shape(batch):
    torch.manual_seed(0)
    model = MLP(5, [8, 4], dropout=0.0)
    out = model(torch.randn(batch, 5))
    assert out.shape == (batch,)
    assert out.dtype == torch.float32


def test_mlp_hidden_dims_respected():
    model = MLP(5, [16, 8, 3], dropout=0.2, activation="gelu")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 16), (16, 8), (8, 3), (3, 1)]
    assert sum(isinstance(m, nn.GELU) for m in model.modules()) == 3
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3 and all(d.p == 0.2 for d in dropouts)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_every_activation(activation):
    model = MLP(3, [4], activation=activation)
    assert any(isinstance(m, ACTIVATIONS[activation]) for m in model.modules())
    assert model(torch.randn(2, 3)).shape == (2,)


def test_mlp_eval_is_deterministic():
    model = MLP(4, [8], dropout=0.5).eval()
    x = torch.randn(6, 4)
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("input_dim", [0, -3])
def test_mlp_invalid_input_dim(input_dim):
    with pytest.raises(ValueError, match="input_dim"):
        MLP(input_dim, [4])


# ------------------------------------------------------------------ optimizers


def classifier(**kwargs) -> AnomalyClassifier:
    args = dict(input_dim=4, hidden_dims=[8], learning_rate=0.01, weight_decay=0.001, num_epochs=9)
    args.update(kwargs)
    return AnomalyClassifier(**args)


@pytest.mark.parametrize(
    "name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_configure_optimizers_optimizer(name, cls):
    model = classifier(optimizer=name)
    opt = model.configure_optimizers()
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.01)
    assert group["weight_decay"] == pytest.approx(0.001)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


@pytest.mark.parametrize(
    "scheduler, cls",
    [
        ("step", torch.optim.lr_scheduler.StepLR),
        ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
        ("plateau", torch.optim.lr_scheduler.ReduceLROnPlateau),
    ],
)
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_configure_optimizers_scheduler(optimizer, scheduler, cls):
    out = classifier(optimizer=optimizer, scheduler=scheduler).configure_optimizers()
    assert isinstance(out, dict)
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer]
    assert type(out["optimizer"]) is opt_cls
    sched = out["lr_scheduler"]
    assert type(sched) is cls
    assert sched.optimizer is out["optimizer"]
    if scheduler == "cosine":
        assert sched.T_max == 9
    if scheduler == "step":
        assert sched.step_size == 3


def test_configure_optimizers_no_scheduler():
    out = classifier(scheduler="none").configure_optimizers()
    assert isinstance(out, torch.optim.Optimizer)


def test_class_weights_scale_the_loss():
    torch.manual_seed(0)
    logits, y = torch.randn(10), torch.tensor([0.0, 1.0] * 5)
    plain = classifier(class_weights=(1.0, 1.0))._loss(logits, y)
    weighted = classifier(class_weights=(1.0, 3.0))._loss(logits, y)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=1 + 2 * y)
    assert weighted == pytest.approx(float(expected))
    assert weighted != pytest.approx(float(plain))


# ------------------------------------------------------------------ read_checkpoint


def test_read_checkpoint_missing(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_read_checkpoint_foreign_torch_file(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"a": 1}, path)
    with pytest.raises(UserError, match="not a netad checkpoint"):
        read_checkpoint(path)


def test_read_checkpoint_text_file(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(UserError, match="not a netad checkpoint"):
        read_checkpoint(path)


def test_read_checkpoint_refuses_pickled_objects(tmp_path):
    import argparse

    # a well-formed netad section, but an arbitrary pickled object next to it: weights_only refuses it
    path = tmp_path / "pickled.ckpt"
    torch.save({"netad": {"format": 1}, "obj": argparse.Namespace(a=1)}, path)
    with pytest.raises(UserError, match="not a netad checkpoint"):
        read_checkpoint(path)


def test_read_checkpoint_accepts_netad_section(tmp_path):
    path = tmp_path / "ours.ckpt"
    torch.save({"netad": {"format": 1, "threshold": 0.3}, "state_dict": {}}, path)
    assert read_checkpoint(path)["netad"]["threshold"] == 0.3


def test_checkpoint_reader_knows_every_hyper_parameter_of_the_classifier():
    """models/checkpoint.py lists the hyper-parameters without importing the LightningModule: the lists agree."""
    import inspect

    from netad.models.checkpoint import HYPER_PARAMETERS

    assert list(HYPER_PARAMETERS) == [n for n in inspect.signature(AnomalyClassifier.__init__).parameters
                                      if n != "self"]
