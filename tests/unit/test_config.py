"""Config loading: every shipped config validates, bad keys/values give one clear UserError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netad.cli import train_main
from netad.config import Config, load_config, parse_override
from netad.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted([ROOT / "config.yaml", *(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs").glob("*.yml")])


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


# ------------------------------------------------------------------ shipped configs


def test_config_files_are_found():
    assert ROOT / "config.yaml" in CONFIG_FILES
    assert len(CONFIG_FILES) >= 2, "expected config.yaml and at least one configs/*.yaml"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    # the file's own values were applied, not just the defaults
    import yaml

    raw = yaml.safe_load(path.read_text())
    for section, values in raw.items():
        if not isinstance(values, dict):  # a top-level value (calibration)
            assert getattr(cfg, section) == values, f"{path.name}: {section}"
            continue
        for key, value in (values or {}).items():
            loaded = getattr(getattr(cfg, section), key)
            if key == "precision":
                value = str(value)
            assert loaded == value, f"{path.name}: {section}.{key}"


# ------------------------------------------------------------------ unknown keys


def test_unknown_nested_key_names_key_and_suggests(tmp_path):
    msg = error_of(tmp_path, "training: {lerning_rate: 0.1}\n")
    assert "training.lerning_rate" in msg
    assert "training.learning_rate" in msg
    assert "\n" not in msg


def test_unknown_nested_key_in_another_section(tmp_path):
    msg = error_of(tmp_path, "model:\n  hiden_dims: [4]\n")
    assert "model.hiden_dims" in msg
    assert "model.hidden_dims" in msg


def test_unknown_top_level_section(tmp_path):
    msg = error_of(tmp_path, "traning:\n  batch_size: 4\n")
    assert "'traning'" in msg
    assert "did you mean 'training'" in msg


def test_unknown_top_level_section_without_close_match(tmp_path):
    msg = error_of(tmp_path, "zzzqqq: {a: 1}\n")
    assert "zzzqqq" in msg
    assert "unknown" in msg


# ------------------------------------------------------------------ bad values


def test_wrong_type_names_key(tmp_path):
    msg = error_of(tmp_path, "training:\n  batch_size: abc\n")
    assert "training.batch_size" in msg
    assert "'abc'" in msg
    assert ">= 1" in msg


@pytest.mark.parametrize(
    "text, key, bound",
    [
        ("model:\n  dropout: 1.5\n", "model.dropout", "< 1"),
        ("training:\n  batch_size: 0\n", "training.batch_size", ">= 1"),
        ("training:\n  learning_rate: -0.1\n", "training.learning_rate", "> 0"),
        ("cross_validation:\n  n_splits: 1\n", "cross_validation.n_splits", ">= 2"),
        ("data:\n  test_size: 1.0\n", "data.test_size", "< 1"),
    ],
)
def test_out_of_range_names_key_and_range(tmp_path, text, key, bound):
    msg = error_of(tmp_path, text)
    assert key in msg
    assert bound in msg


def test_invalid_literal_lists_choices(tmp_path):
    msg = error_of(tmp_path, "training:\n  optimizer: rmsprop\n")
    assert "training.optimizer" in msg
    assert "rmsprop" in msg
    for choice in ("adam", "adamw", "sgd"):
        assert f"'{choice}'" in msg


def test_label_column_cannot_be_dropped(tmp_path):
    msg = error_of(tmp_path, "data:\n  label_column: y\n  drop_columns: [y]\n")
    assert "drop_columns" in msg


# ------------------------------------------------------------------ --set overrides


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(
        None,
        [
            "training.num_epochs=3",
            "training.early_stopping_patience=null",
            "model.hidden_dims=[8, 4]",
            "data.normal_value=normal",
            "training.learning_rate=0.05",
            "logging.use_wandb=false",
        ],
    )
    assert cfg.training.num_epochs == 3 and type(cfg.training.num_epochs) is int
    assert cfg.training.early_stopping_patience is None
    assert cfg.model.hidden_dims == [8, 4]
    assert cfg.data.normal_value == "normal" and isinstance(cfg.data.normal_value, str)
    assert cfg.training.learning_rate == pytest.approx(0.05)
    assert cfg.logging.use_wandb is False


def test_overrides_win_over_file(tmp_path):
    path = write(tmp_path, "training:\n  num_epochs: 7\n  batch_size: 16\n")
    cfg = load_config(path, ["training.num_epochs=2"])
    assert cfg.training.num_epochs == 2
    assert cfg.training.batch_size == 16  # untouched keys keep the file's value


def test_parse_override_values():
    assert parse_override("training.num_epochs=3") == ("training.num_epochs", 3)
    assert parse_override("training.early_stopping_patience=null") == ("training.early_stopping_patience", None)
    assert parse_override("model.hidden_dims=[8, 4]") == ("model.hidden_dims", [8, 4])
    assert parse_override("data.normal_value=normal") == ("data.normal_value", "normal")
    # only the first '=' splits key from value
    assert parse_override("data.data_path=a=b.csv") == ("data.data_path", "a=b.csv")


def test_override_unknown_key_suggests():
    with pytest.raises(UserError) as info:
        load_config(None, ["training.lerning_rate=0.1"])
    msg = str(info.value)
    assert "training.lerning_rate" in msg
    assert "training.learning_rate" in msg


def test_override_without_equals():
    with pytest.raises(UserError) as info:
        load_config(None, ["training.num_epochs"])
    assert "KEY=VALUE" in str(info.value)
    assert "training.num_epochs" in str(info.value)


def test_override_bad_value_is_validated():
    with pytest.raises(UserError) as info:
        load_config(None, ["model.dropout=1.5"])
    assert "model.dropout" in str(info.value)
    assert "< 1" in str(info.value)


# ------------------------------------------------------------------ files


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(UserError) as info:
        load_config(missing)
    assert "not found" in str(info.value)
    assert str(missing) in str(info.value)


def test_non_mapping_yaml(tmp_path):
    msg = error_of(tmp_path, "- a\n- b\n")
    assert "mapping" in msg


def test_invalid_yaml(tmp_path):
    msg = error_of(tmp_path, "training: [unclosed\n")
    assert "not valid YAML" in msg


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


# ------------------------------------------------------------------ CLI


def _single_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert "Traceback" not in err
    return lines[0]


def test_cli_bad_set_key_exits_2(capsys):
    code = train_main(["--config", str(ROOT / "config.yaml"), "--set", "training.lerning_rate=0.1"])
    assert code == 2
    line = _single_error_line(capsys)
    assert "training.learning_rate" in line


def test_cli_bad_config_file_exits_2(tmp_path, capsys):
    bad = write(tmp_path, "model:\n  dropout: 1.5\n")
    assert train_main(["--config", str(bad)]) == 2
    line = _single_error_line(capsys)
    assert "model.dropout" in line


def test_cli_missing_config_exits_2(tmp_path, capsys):
    assert train_main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in _single_error_line(capsys)


@pytest.mark.parametrize("override, needle", [
    ("model.hidden_dims=[100000000]", "from 1 to 16384"),
    ("model.hidden_dims=[16384, 16384, 16384]", "million weights"),
    ("training.batch_size=100000000000", "<= 10000000"),
    ("training.num_epochs=10000000000", "<= 1000000"),
    ("data.max_categories=10000000", "<= 100000"),
])
def test_values_that_cannot_fit_in_memory_are_refused_with_their_range(override, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        load_config(None, [override])
    load_config(None, ["model.hidden_dims=[4096, 2048]"])  # large but sane stays allowed


def test_a_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    from netad.cli import train_main

    path = tmp_path / "latin1.yaml"
    path.write_bytes("data:\n  label_column: \"caf\xe9\"\n".encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        load_config(path)
    assert train_main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not UTF-8 text" in err[0]
