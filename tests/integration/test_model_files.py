"""Crafted and broken model files: one ``error: <path>: ...`` line, exit code 2, from every command that loads them.

The checkpoints are pickle-free (torch.save of plain dicts and tensors) with parts missing or of the wrong shape;
the exported folders have a config.json or model.safetensors that is damaged, incomplete or does not fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_frame, tiny_model
from netad.cli import predict_main, upload_main
from netad.cli import test_main as run_test_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained checkpoint, its export, and rows to score."""
    from netad.export.artifact import export_checkpoint

    root = tmp_path_factory.mktemp("files")
    ckpt = tiny_model(root, seed=5, run_name="files")
    rows = root / "rows.csv"
    make_frame(n=20, seed=6).drop(columns=["label"]).to_csv(rows, index=False)
    return {"ckpt": ckpt, "export": export_checkpoint(ckpt, root / "export"), "rows": rows}


def run(main, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, path: Path, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _pca_misfit(ckpt: dict) -> None:  # a hybrid's novelty part for 3 features, on a network that reads more
    ckpt["netad"]["novelty"] = {"format": 1, "kind": "pca", "center": 0.0, "scale": 1.0, "threshold": 1.0,
                                "tensors": {"mean": torch.zeros(3), "components": torch.zeros(2, 3)}}


CHECKPOINT_CASES = {
    "wrong_shape": (lambda c: c["state_dict"].update({"model.net.0.weight": torch.zeros(16, 99)}),
                    "weight model.net.0.weight has shape [16, 99], the architecture needs [16, "),
    "missing_weight": (lambda c: c["state_dict"].pop("model.net.3.bias"), "weight model.net.3.bias is missing"),
    "no_state_dict": (lambda c: c.pop("state_dict"), "no 'state_dict' section"),
    "no_netad_section": (lambda c: c.pop("netad"), "not a netad checkpoint"),
    "no_hyper_parameters": (lambda c: c.pop("hyper_parameters"), "no 'hyper_parameters' section"),
    "hyper_parameter_missing": (lambda c: c["hyper_parameters"].pop("input_dim"), "'input_dim' is missing"),
    "bad_activation": (lambda c: c["hyper_parameters"].update(activation="sigmoidish"), "activation 'sigmoidish'"),
    "no_threshold": (lambda c: c["netad"].pop("threshold"), "the threshold is missing or not a number"),
    "preprocessing_misfit": (lambda c: c["netad"]["preprocessor"]["numeric"]["scale"].pop(),
                             "'numeric.scale' does not hold one number per numeric column"),
    "novelty_misfit": (_pca_misfit, "the model's parts do not fit together"),
}


@pytest.mark.parametrize("case", [*CHECKPOINT_CASES, "not_a_dict"])
def test_crafted_checkpoint_is_one_line_from_every_command(trained, capsys, tmp_path, case):
    path = tmp_path / f"{case}.ckpt"
    if case == "not_a_dict":
        torch.save([torch.zeros(2), 1], path)
        needle = "not a netad checkpoint"
    else:
        ckpt = load(trained["ckpt"])
        change, needle = CHECKPOINT_CASES[case]
        change(ckpt)
        torch.save(ckpt, path)
    out = tmp_path / "scored.csv"
    for main, args in ((run_test_main, ["--checkpoint", str(path), "--no-log"]),
                       (predict_main, ["--model", str(path), "--input", str(trained["rows"]), "--output", str(out)]),
                       (upload_main, ["--model", str(path), "--repo-id", "alice/x", "--dry-run",
                                      "--output", str(tmp_path / "e")])):
        code, err = run(main, capsys, *args)
        assert_one_line(code, err, path, needle)
    assert not out.exists() and not (tmp_path / "e").exists()


def _write_config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def _wrong_shape_weights(folder: Path) -> None:
    weights = load_file(folder / "model.safetensors")
    weights["mlp.net.6.weight"] = torch.zeros(1, 3)
    save_file(weights, folder / "model.safetensors")


FOLDER_CASES = {
    "config_not_json": (lambda f: (f / "config.json").write_text('{"format": "netad-model",'),
                        "config.json is not JSON"),
    "config_not_an_object": (lambda f: (f / "config.json").write_text("[1, 2]"), "config.json is not a netad model"),
    "no_config": (lambda f: (f / "config.json").unlink(), "no config.json"),
    "no_architecture": (lambda f: _write_config(f, lambda c: c.pop("architecture")), "the architecture is missing"),
    "no_preprocessing": (lambda f: _write_config(f, lambda c: c.pop("preprocessing")),
                         "the preprocessing state is missing"),
    "no_threshold": (lambda f: _write_config(f, lambda c: c.pop("threshold")),
                     "the threshold is missing or not a number"),
    "no_input_columns": (lambda f: _write_config(f, lambda c: c["preprocessing"].pop("input_columns")),
                         "'input_columns' is missing"),
    "no_weights": (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    "truncated_weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:200]),
                          "model.safetensors is not a readable safetensors file"),
    "wrong_shape_weights": (_wrong_shape_weights, "weight mlp.net.6.weight has shape [1, 3], the architecture needs"),
}


@pytest.mark.parametrize("case", FOLDER_CASES)
def test_broken_export_folder_is_one_line(trained, capsys, tmp_path, case):
    from netad.inference import ModelLoadError, NetadPredictor

    folder = tmp_path / case
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "README.md"):
        (folder / name).write_bytes((trained["export"] / name).read_bytes())
    NetadPredictor.from_pretrained(folder)  # the copy loads until it is broken
    change, needle = FOLDER_CASES[case]
    change(folder)
    out = tmp_path / "scored.csv"
    code, err = run(predict_main, capsys, "--model", str(folder), "--input", str(trained["rows"]), "--output", str(out))
    assert_one_line(code, err, folder, needle)
    assert not out.exists()
    # the Python API: one clear exception, an OSError like other libraries' from_pretrained
    with pytest.raises(ModelLoadError) as info:
        NetadPredictor.from_pretrained(folder)
    assert isinstance(info.value, OSError) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{folder}: ") and needle in str(info.value)


def test_export_folder_given_where_a_checkpoint_belongs(trained, capsys):
    folder = trained["export"]
    for main, args in ((run_test_main, ["--checkpoint", str(folder), "--no-log"]),
                       (upload_main, ["--model", str(folder), "--repo-id", "alice/x", "--dry-run"])):
        code, err = run(main, capsys, *args)
        assert_one_line(code, err, folder, "a folder, not a checkpoint file (an exported model")
