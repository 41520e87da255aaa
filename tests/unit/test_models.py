"""The plain MLP, the LightningModule's optimizers and schedulers, and checkpoint checks."""

from __future__ import annotations

import pytest
import torch

from netad.errors import UserError
from netad.models import MLP, AnomalyClassifier, read_checkpoint


def test_mlp_shapes_and_layers():
    net = MLP(7, [5, 3], dropout=0.1, activation="gelu")
    out = net(torch.randn(4, 7))
    assert out.shape == (4,)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(7, 5), (5, 3), (3, 1)]
    assert any(isinstance(m, torch.nn.GELU) for m in net.modules())
    with pytest.raises(ValueError):
        MLP(0)


def _module(**kwargs) -> AnomalyClassifier:
    return AnomalyClassifier(input_dim=4, hidden_dims=[8], **kwargs)


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                      ("sgd", torch.optim.SGD)])
def test_optimizers(name, cls):
    opt = _module(optimizer=name, learning_rate=0.05, weight_decay=0.01).configure_optimizers()
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("name,cls", [("step", torch.optim.lr_scheduler.StepLR),
                                      ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
                                      ("plateau", torch.optim.lr_scheduler.ReduceLROnPlateau)])
def test_schedulers(name, cls):
    conf = _module(scheduler=name, num_epochs=9).configure_optimizers()
    sched = conf["lr_scheduler"]
    sched = sched["scheduler"] if isinstance(sched, dict) else sched
    assert type(sched) is cls
    if name == "plateau":
        assert conf["lr_scheduler"]["monitor"] == "val/loss"


def test_class_weights_weight_the_loss():
    y = torch.tensor([0.0, 1.0])
    logits = torch.zeros(2)
    plain = _module(class_weights=(1.0, 1.0))._loss(logits, y)
    weighted = _module(class_weights=(1.0, 9.0))._loss(logits, y)
    assert weighted == pytest.approx(plain * 5.0)  # mean of (1, 9) x the same per-row loss


def test_read_checkpoint_rejects_what_is_not_ours(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path / "absent.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"a": 1}, foreign)
    with pytest.raises(UserError, match="not a netad checkpoint"):
        read_checkpoint(foreign)
    text = tmp_path / "text.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a netad checkpoint"):
        read_checkpoint(text)
