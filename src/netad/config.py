"""Typed configuration, validated when it is loaded.

``load_config(path, overrides)`` reads a YAML file, applies ``--set key=value`` overrides
(values parsed as YAML) and returns a :class:`Config`. Every problem becomes a
:class:`~netad.errors.UserError` with one line that names the key: unknown keys get the
nearest valid name, bad values get the allowed range or choices.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from netad.errors import UserError


METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "auroc", "auprc")
MONITORABLE = ("val/loss",) + tuple(f"val/{m}" for m in METRIC_NAMES)


#: limits that keep a typo from asking for more memory than any machine has (a 16384-wide layer pair
#: alone is a gigabyte of float32 weights, four with Adam's state)
MAX_WIDTH = 16384
MAX_LAYERS = 32
MAX_HIDDEN_WEIGHTS = 50_000_000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    type: Literal["classifier", "hybrid"] = "classifier"  # hybrid: classifier OR a novelty detector (see hybrid)
    hidden_dims: list[int] = Field(default_factory=lambda: [128, 64, 32], min_length=1, max_length=MAX_LAYERS)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    activation: Literal["relu", "leaky_relu", "gelu", "tanh", "elu", "silu"] = "relu"

    @field_validator("hidden_dims")
    @classmethod
    def _positive_dims(cls, dims: list[int]) -> list[int]:
        if any(not 1 <= d <= MAX_WIDTH for d in dims):
            raise ValueError(f"every hidden dimension must be from 1 to {MAX_WIDTH} (a wider layer needs "
                             f"gigabytes of memory)")
        weights = sum(a * b for a, b in zip(dims, dims[1:]))
        if weights > MAX_HIDDEN_WEIGHTS:
            raise ValueError(f"the hidden layers would hold {weights / 1e6:.0f} million weights; at most "
                             f"{MAX_HIDDEN_WEIGHTS // 10**6} million")
        return dims


class TrainingConfig(_Section):
    batch_size: int = Field(64, ge=1, le=10_000_000)
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    num_epochs: int = Field(50, ge=1, le=1_000_000)
    early_stopping_patience: Optional[int] = Field(10, ge=1, le=1_000_000)
    weight_decay: float = Field(0.0, ge=0.0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    scheduler: Literal["none", "step", "cosine", "plateau"] = "none"
    class_weight: Union[Literal["balanced", "none"], float, dict[int, float]] = "balanced"
    seed: int = Field(42, ge=0)

    @field_validator("class_weight")
    @classmethod
    def _check_weights(cls, value: Any) -> Any:
        if isinstance(value, float) and value <= 0:
            raise ValueError("a numeric class_weight (weight of the anomaly class) must be > 0")
        if isinstance(value, dict):
            if set(value) != {0, 1} or any(w <= 0 for w in value.values()):
                raise ValueError("explicit class_weight must be {0: w_normal, 1: w_anomaly} with weights > 0")
        return value


class ThresholdConfig(_Section):
    method: Literal["max_f1", "target_fpr"] = "max_f1"
    target_fpr: float = Field(0.01, gt=0.0, lt=1.0)


class CrossValidationConfig(_Section):
    n_splits: int = Field(5, ge=2, le=100)
    #: stratified: i.i.d. folds. by_type / by_family: each attack type (or family, data.type_families) falls in
    #: one fold's held-out rows, so every fold is measured on attacks its model never saw; normal rows are
    #: spread over all folds
    strategy: Literal["stratified", "by_type", "by_family"] = "stratified"
    shuffle: bool = True
    random_state: int = Field(42, ge=0)
    stratify: bool = True
    permutation_baseline: bool = True
    train_final_model: bool = True


class DataConfig(_Section):
    data_path: str = "data/raw/embedded_system_network_security_dataset.csv"
    label_column: str = "label"
    normal_value: Optional[Union[str, int, float, bool]] = None
    column_names: Optional[list[str]] = None
    drop_columns: list[str] = Field(default_factory=list)
    nan_policy: Literal["error", "drop", "median", "zero"] = "error"
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    val_size: float = Field(0.2, gt=0.0, lt=1.0)
    scaler: Literal["standard", "minmax", "none"] = "standard"
    log_transform: Union[Literal["none", "auto"], list[str]] = "none"
    max_categories: int = Field(50, ge=1, le=100_000)
    #: the column that names each row's attack type (it may be the label column itself, as in NSL-KDD); never a
    #: feature. It gives per-type recall, and the by_type / by_family CV strategies
    type_column: Optional[str] = None
    #: attack families, each a list of attack types (NSL-KDD: dos, probe, r2l, u2r)
    type_families: Optional[dict[str, list[str]]] = None
    #: before training: a column that alone separates the labels, an id in a sorted file, duplicate rows
    #: shared with the test hold-out (netad.data.leakage); warn, error (one line, nothing trained) or off
    leakage_check: Literal["warn", "error", "off"] = "warn"
    #: true: the rows are read into memory; false: out of core, block by block from their files, each fold's rows
    #: preprocessed once into files in the run folder (netad.data.outofcore); auto: out of core above 500 million
    #: values (rows times columns)
    in_memory: Union[bool, Literal["auto"]] = "auto"

    @field_validator("leakage_check", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` as false (and ``on`` as true)."""
        return {False: "off", True: "warn"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("type_families")
    @classmethod
    def _one_family_per_type(cls, families: Optional[dict[str, list[str]]]) -> Optional[dict[str, list[str]]]:
        if families is None:
            return None
        seen: dict[str, str] = {}
        for family, types in families.items():
            if not types:
                raise ValueError(f"family '{family}' lists no attack types")
            for t in types:
                if t in seen:
                    raise ValueError(f"attack type '{t}' is in two families ('{seen[t]}' and '{family}')")
                seen[t] = family
        return families

    @property
    def family_of(self) -> dict[str, str]:
        """attack type -> family, from ``type_families`` (empty without it)."""
        return {t: family for family, types in (self.type_families or {}).items() for t in types}

    @field_validator("column_names")
    @classmethod
    def _unique_names(cls, names: Optional[list[str]]) -> Optional[list[str]]:
        if names is not None and len(set(names)) != len(names):
            raise ValueError("column_names must be unique")
        return names


class CheckpointConfig(_Section):
    save_dir: str = "checkpoints"
    monitor: str = "val/loss"
    mode: Literal["auto", "min", "max"] = "auto"
    save_every_n_epochs: Optional[int] = Field(None, ge=1)
    #: last.ckpt (what a resume continues from) after an epoch once this many seconds have passed since the
    #: previous write, and after the last epoch; 0: after every epoch
    last_every_seconds: float = Field(10.0, ge=0)

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, value: str) -> str:
        if value not in MONITORABLE:
            raise ValueError(f"must be one of {', '.join(MONITORABLE)}")
        return value

    @property
    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "min" if self.monitor.endswith("loss") else "max"


class LoggingConfig(_Section):
    tensorboard_dir: str = "logs/tensorboard"
    use_wandb: bool = False
    wandb_mode: Literal["online", "offline", "disabled"] = "offline"
    wandb_project: str = "netad"
    wandb_entity: Optional[str] = None
    wandb_dir: str = "logs"


#: the unsupervised detectors of netad.detectors, by registry name (kept here: loading a config imports no torch)
DETECTOR_NAMES = ("iforest", "lof", "ocsvm", "elliptic", "pca", "kmeans", "hbos", "copod", "ae", "vae")
DetectorName = Literal["iforest", "lof", "ocsvm", "elliptic", "pca", "kmeans", "hbos", "copod", "ae", "vae"]


class DetectorsConfig(_Section):
    """What ``compare.py`` runs beside the classifier, and how the detectors are set up."""

    names: list[DetectorName] = Field(default_factory=lambda: list(DETECTOR_NAMES))
    include_classifier: bool = True
    contamination: float = Field(0.05, gt=0.0, lt=0.5)  # the training-score percentile before validation re-chooses
    params: dict[DetectorName, dict[str, Any]] = Field(default_factory=dict)  # e.g. {iforest: {n_estimators: 300}}


PortableDetector = Literal["pca", "kmeans", "ae", "vae"]  # the detectors a checkpoint can hold as tensors
STACK_WEIGHT_NAMES = ("logit", "novelty", "bias")


class HybridConfig(_Section):
    """``model.type: hybrid``: a detector fitted on the normal training rows flags traffic unlike them."""

    detector: PortableDetector = "pca"
    novelty_fpr: float = Field(0.05, gt=0.0, lt=0.5)  # share of normal validation rows the novelty part may flag
    params: dict[str, Any] = Field(default_factory=dict)  # detector parameters, e.g. {variance: 0.99}
    #: or: flagged when either part reaches its threshold. stack: sigmoid(logit * w_logit + asinh(novelty) *
    #: w_novelty + bias), weights learned on out-of-type held-out rows by train.py --select
    combine: Literal["or", "stack"] = "or"
    stack_weights: Optional[dict[str, float]] = None

    @model_validator(mode="after")
    def _stack_has_weights(self) -> "HybridConfig":
        if self.stack_weights is not None and set(self.stack_weights) != set(STACK_WEIGHT_NAMES):
            raise ValueError(f"hybrid.stack_weights needs exactly the keys {', '.join(STACK_WEIGHT_NAMES)}")
        if self.combine == "stack" and self.stack_weights is None:
            raise ValueError("hybrid.combine stack needs hybrid.stack_weights, learned on out-of-type rows: "
                             "python train.py --select writes them")
        return self


class SelectionConfig(_Section):
    """``train.py --select``: the hybrid candidates compared by by_type (or by_family) CV on the training file."""

    detectors: list[PortableDetector] = Field(default_factory=lambda: ["pca", "kmeans", "ae", "vae"], min_length=1)
    budgets: list[float] = Field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1], min_length=1)  # novelty_fpr values
    combine: list[Literal["or", "stack"]] = Field(default_factory=lambda: ["or", "stack"], min_length=1)
    include_classifier: bool = True  # the classifier alone is a candidate too
    metric: Literal["auroc", "auprc", "f1", "accuracy", "recall"] = "auroc"  # fold mean on held-out rows

    @field_validator("budgets")
    @classmethod
    def _budgets_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < b < 0.5 for b in value):
            raise ValueError("every budget must be in (0, 0.5): the share of normal validation rows flagged")
        return sorted(set(value))


class HuggingFaceConfig(_Section):
    repo_id: Optional[str] = None
    private: bool = False


class TrainerConfig(_Section):
    """Where Lightning trains (see netad.training.hardware): a GPU when present with ``auto``; several
    GPUs or machines through Lightning's ``ddp`` strategy."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: Union[Literal["auto"], int, list[int]] = 1  # per machine; a list picks GPU indices
    strategy: Literal["auto", "ddp"] = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: Literal["32", "32-true", "16-mixed", "bf16-mixed", "64", "64-true"] = "32-true"
    # CPU threads for PyTorch's (and scikit-learn's) math: auto = 1 (netad.threads.AUTO_THREADS); a number
    # for much larger models
    num_threads: Union[Literal["auto"], int] = "auto"

    @field_validator("num_threads", mode="before")
    @classmethod
    def _thread_count(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, int) and not 1 <= value <= 1024) or \
                (isinstance(value, str) and value != "auto"):
            raise ValueError("must be 'auto' or a thread count from 1 to 1024")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_to_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("devices", mode="before")
    @classmethod
    def _device_count(cls, value: Any) -> Any:
        allowed = "must be a count >= 1, -1 (all), 'auto' or a list of GPU indices such as [0, 1]"
        if isinstance(value, str) and value.strip() != "auto":
            try:
                value = int(value)
            except ValueError:
                raise ValueError(allowed) from None
        if isinstance(value, int) and not isinstance(value, bool) and not (value >= 1 or value == -1):
            raise ValueError(allowed)
        if isinstance(value, list) and (not value or any(i < 0 for i in value) or len(set(value)) != len(value)):
            raise ValueError("a list of devices must hold distinct GPU indices >= 0")
        return value


class Config(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    cross_validation: CrossValidationConfig = Field(default_factory=CrossValidationConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    hybrid: HybridConfig = Field(default_factory=HybridConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    huggingface: HuggingFaceConfig = Field(default_factory=HuggingFaceConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    #: the classifier's probability calibrated on the validation rows after training (the threshold is then
    #: chosen on the calibrated scores): none | temperature (ranking kept exactly) | isotonic
    calibration: Literal["none", "temperature", "isotonic"] = "none"

    @model_validator(mode="after")
    def _label_not_dropped(self) -> "Config":
        if self.calibration != "none" and self.model.type == "hybrid":
            raise ValueError(f"calibration {self.calibration} calibrates the classifier's probability; a hybrid's "
                             f"score is not one (set calibration: none for model.type hybrid)")
        if self.data.label_column in self.data.drop_columns:
            raise ValueError("data.drop_columns must not contain data.label_column")
        if self.data.type_column is not None and self.data.type_column in self.data.drop_columns:
            raise ValueError("data.drop_columns must not contain data.type_column")
        strategy = self.cross_validation.strategy
        if strategy != "stratified" and self.data.type_column is None:
            raise ValueError(f"cross_validation.strategy {strategy} needs data.type_column (the column that names "
                             f"each row's attack type)")
        if strategy == "by_family" and not self.data.type_families:
            raise ValueError("cross_validation.strategy by_family needs data.type_families")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- loading


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_valid_keys(ann, dotted + "."))
    return keys


VALID_KEYS = _valid_keys(Config)


def _suggest(key: str) -> str:
    """' (did you mean 'x'?)' for the nearest valid key, or ''."""
    section = key.rsplit(".", 1)[0] + "." if "." in key else ""
    same_level = [k for k in VALID_KEYS if k.startswith(section) and k.count(".") == key.count(".")]
    match = difflib.get_close_matches(key, same_level, n=1, cutoff=0.5) or difflib.get_close_matches(
        key, VALID_KEYS, n=1, cutoff=0.5
    )
    return f" (did you mean '{match[0]}'?)" if match else ""


def _field_for(loc: tuple) -> Any:
    model: Any = Config
    field = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return field
        field = model.model_fields[part]
        model = field.annotation
    return field


def _allowed(field: Any) -> str:
    """Human description of a field's allowed values from its constraints."""
    if field is None:
        return ""
    bounds = []
    for meta in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{sym} {value}")
    if bounds:
        return "allowed: " + " and ".join(bounds)
    return ""


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"function-after"})))
    # union branches add their type names to loc; keep only real config keys
    keys = [p for p in loc if isinstance(p, str) and p in {k.rsplit(".", 1)[-1] for k in VALID_KEYS}]
    key = ".".join(keys) if keys else ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        # the unknown name itself is not a valid key, so the filter above would drop it
        key = ".".join(str(p) for p in loc)
        return f"unknown config key '{key}'{_suggest(key)}"
    got = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if not key:  # a rule over several sections (Config's own validator): its message names the keys
        return msg
    allowed = _allowed(_field_for(tuple(keys)))
    extra = f"; {allowed}" if allowed and allowed not in msg else ""
    return f"invalid value for config key '{key}': {msg}{extra} (got {got!r})"


def parse_override(text: str) -> tuple[str, Any]:
    """'training.num_epochs=3' -> ('training.num_epochs', 3); the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"--set expects KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key not in VALID_KEYS:
        raise UserError(f"unknown config key '{key}' in --set{_suggest(key)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: value '{raw}' is not valid YAML ({exc.problem})") from None
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        key, value = parse_override(text)
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"{source}: {_format_error(first)}") from None


def load_config(path: str | Path | None = "config.yaml", overrides: Optional[list[str]] = None) -> Config:
    """Load, override and validate a YAML config. ``path=None`` starts from the defaults."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                            f"save the config as UTF-8") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: the top level must be a mapping of sections (model, training, ...)")
        raw = loaded
    raw = apply_overrides(raw, list(overrides or []))
    return config_from_dict(raw, source)
