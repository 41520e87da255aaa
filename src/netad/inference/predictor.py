"""The exported model: raw rows in, scores and labels out, without Lightning or the training config.

An exported folder (or a Hub repo) holds ``model.safetensors`` (weights) and ``config.json``
(architecture, the fitted preprocessing, threshold, label meaning, hybrid novelty state):
loading never unpickles anything.

    from netad.inference import NetadPredictor
    model = NetadPredictor.from_pretrained("user/netad-model")   # or a local folder
    scored = model.predict("traffic.csv")                         # score and is_anomaly per row

A model that cannot be loaded (not found, Hub unreachable and not cached, unauthorised, damaged or crafted
files) raises ``ModelLoadError``, an OSError whose message is one line naming the model and the cause.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd
import torch
from huggingface_hub import ModelHubMixin
from safetensors.torch import load_file, save_file

import netad
from netad.data.preprocessing import Encoded, TabularPreprocessor, preprocessing_problem
from netad.data.summary import summary_problem
from netad.errors import CONTENT_ERRORS, ModelLoadError, UserError, first_line
from netad.inference.hub import CONFIG_NAME, WEIGHTS_NAME, hub_files
from netad.inference.lookup import SplitInputMLP
from netad.models.checkpoint import CHECKPOINT_KEY, read_checkpoint
from netad.models.calibration import Calibration, calibration_problem
from netad.models.mlp import MLP, mlp_args, network_problem
from netad.models.novelty import fusion_of, hybrid_score, scorer_from_state

ARTIFACT_FORMAT = "netad-model"
ARTIFACT_VERSION = 1
Rows = Union[pd.DataFrame, list, dict, str, Path]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def model_problem(config: Any, weights: Any) -> Optional[str]:
    """What makes config.json content and weights unusable as a netad model (one line), or None."""
    if not isinstance(config, dict) or config.get("format") != ARTIFACT_FORMAT \
            or config.get("format_version") != ARTIFACT_VERSION:
        return "config.json is not a netad model (format netad-model, version 1)"
    if not isinstance(weights, dict) or not weights:
        return "weights are missing (model.safetensors)"
    arch = config.get("architecture")
    problem = network_problem(arch, weights, "mlp.")
    if problem:
        return problem
    problem = preprocessing_problem(config.get("preprocessing"), arch["input_dim"])
    if problem:
        return problem
    if not _number(config.get("threshold")):
        return f"the threshold is missing or not a number ({config.get('threshold')!r})"
    if not isinstance(config.get("data", {}), (dict, type(None))):
        return "config.json 'data' is not a mapping"
    if config.get("novelty") is not None and not isinstance(config["novelty"], dict):
        return "config.json 'novelty' is not a mapping"
    if config.get("data_summary") is not None:
        problem = summary_problem(config["data_summary"])
        if problem:
            return problem
    calibration = config.get("calibration")
    if calibration is not None:
        if config.get("novelty"):
            return "a hybrid's score is not a probability: config.json cannot calibrate it"
        problem = calibration_problem(_calibration_state(calibration, weights))
        if problem:
            return problem
    parts = ("mlp.",) + (("novelty.",) if config.get("novelty") else ()) + (("calibration.",) if calibration else ())
    unknown = [k for k in weights if not k.startswith(parts)]
    if unknown:
        return f"weight {unknown[0]} belongs to no part of the model"
    return None


def _calibration_state(config: Any, weights: dict[str, Any]) -> Any:
    """config.json's calibration section with its tensors (``calibration.*`` weights), as the checkpoint holds it."""
    if not isinstance(config, dict):
        return config
    return dict(config, tensors={k[len("calibration."):]: v for k, v in weights.items() if k.startswith("calibration.")})


def artifact_from_checkpoint(ckpt: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config.json content, safetensors tensors) of a loaded checkpoint dict."""
    hp, ours = ckpt["hyper_parameters"], ckpt[CHECKPOINT_KEY]  # read_checkpoint(..., trained_model=True) checked them
    meta = ours.get("metadata", {})
    train_cfg = meta.get("config", {})
    data = train_cfg.get("data", {})
    weights = {f"mlp.{k[len('model.'):]}": v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    novelty = ours.get("novelty")
    if novelty:
        weights.update({f"novelty.{k}": v for k, v in novelty["tensors"].items()})
    calibration = ours.get("calibration")
    if calibration:
        weights.update({f"calibration.{k}": v for k, v in calibration["tensors"].items()})
    config = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_VERSION,
        "package": "netad",
        "package_version": netad.__version__,
        "architecture": {"input_dim": hp["input_dim"], "hidden_dims": list(hp["hidden_dims"]),
                         "dropout": hp.get("dropout", 0.3), "activation": hp.get("activation", "relu")},
        "preprocessing": ours["preprocessor"],
        "threshold": float(ours["threshold"]),
        "threshold_method": hp.get("threshold_method", "max_f1"),
        "threshold_target_fpr": hp.get("target_fpr"),
        "label": {"column": data.get("label_column"), "normal_value": data.get("normal_value"),
                  "meaning": "score = probability-like anomaly score; is_anomaly = 1 when score >= threshold"},
        # no training file name (nor the run's name, which holds its date and time): neither helps scoring
        "data": {"column_names": data.get("column_names"), "drop_columns": data.get("drop_columns", [])},
        "model_type": "hybrid" if novelty else "classifier",
        "novelty": {k: v for k, v in novelty.items() if k != "tensors"} if novelty else None,
        "calibration": {k: v for k, v in calibration.items() if k != "tensors"} if calibration else None,
        "data_summary": ours.get("data_summary"),  # netad drift: training columns and scores, no rows
        "training": {"cv_summary": meta.get("cv_summary"), "cv_verdict": meta.get("cv_verdict"),
                     "epoch": ckpt.get("epoch")},
    }
    return config, {k: v.detach().clone().contiguous() for k, v in weights.items()}


class NetadPredictor(
    ModelHubMixin,
    library_name="netad",
    tags=["anomaly-detection", "network-security", "tabular-classification"],
    license="mit",
):
    """Score raw network records with an exported netad model."""

    def __init__(self, config: dict[str, Any], weights: Optional[dict[str, torch.Tensor]] = None) -> None:
        """``config``: config.json's content; ``weights``: model.safetensors' tensors. Contents that do not
        make a usable model raise ValueError with a one-line reason."""
        problem = model_problem(config, weights)
        if problem:
            raise ValueError(problem)
        self.config = config
        self._weights = {k: v.detach().contiguous() for k, v in weights.items()}
        input_dim, hidden, dropout, activation = mlp_args(config["architecture"])
        self.net = MLP(input_dim, list(hidden), float(dropout), activation)
        self.net.load_state_dict({k[len("mlp."):]: v for k, v in weights.items() if k.startswith("mlp.")})
        self.net.eval()
        self.preprocessor = TabularPreprocessor.from_state(config["preprocessing"])
        self.threshold = float(config["threshold"])
        self.novelty = None
        self.fusion: Optional[dict[str, Any]] = None  # the hybrid's rule: None for "or", else the stack's weights
        self.calibration: Optional[Calibration] = None  # the classifier's calibrated probability (calibration:)
        if config.get("calibration"):
            self.calibration = Calibration(_calibration_state(config["calibration"], weights))
        if config.get("novelty"):
            tensors = {k[len("novelty."):]: v for k, v in weights.items() if k.startswith("novelty.")}
            try:
                self.novelty = scorer_from_state(dict(config["novelty"], tensors=tensors))
                self.fusion = fusion_of(config["novelty"])
            except CONTENT_ERRORS as exc:
                raise ValueError(f"the novelty detector's state is unusable ({first_line(exc)})") from None
        pre = self.preprocessor.state
        self._split_mlp = SplitInputMLP(self.net, len(pre["numeric"]["columns"]) + len(pre["boolean"]["columns"]),
                                        self.preprocessor.block_sizes())
        try:  # one row of zeros through every part: parts that do not fit each other fail here, not on real rows
            self.score_encoded(Encoded(np.zeros((1, len(pre["numeric"]["columns"]) + len(pre["boolean"]["columns"])),
                                                dtype=np.float32),
                                       [np.zeros(1, dtype=np.int64) for _ in pre["categorical"]["columns"]]))
        except CONTENT_ERRORS as exc:
            raise ValueError(f"the model's parts do not fit together ({first_line(exc)})") from None

    # ---------------------------------------------------------------- scoring
    @property
    def columns(self) -> list[str]:
        """The raw feature columns the model reads."""
        return list(self.preprocessor.state["input_columns"])

    def _frame(self, rows: Rows) -> pd.DataFrame:
        if isinstance(rows, (str, Path)):
            data = self.config.get("data") or {}
            names = data.get("column_names")
            dtypes = self.preprocessor.csv_dtypes()
            frame = pd.read_csv(rows, header=None, names=names, dtype=dtypes, low_memory=False) if names else \
                pd.read_csv(rows, dtype=dtypes, low_memory=False)
        elif isinstance(rows, dict):
            frame = pd.DataFrame([rows])
        elif isinstance(rows, list):
            frame = pd.DataFrame(rows)
        elif isinstance(rows, pd.DataFrame):
            frame = rows
        else:
            raise TypeError("rows must be a DataFrame, a list of dicts, a dict or a CSV path")
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"rows are missing columns the model reads: {', '.join(missing)}")
        return frame

    def score(self, rows: Rows) -> np.ndarray:
        """Anomaly scores in [0, 1]; a row is an anomaly at ``score >= self.threshold``."""
        return self.score_with_novelty(rows)[0]

    def score_with_novelty(self, rows: Rows) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """The scores and, for a hybrid, the novelty detector's own (standardised) scores."""
        frame = self._frame(rows)
        return self.score_encoded(self.preprocessor.encode(frame[self.columns]))

    def score_encoded(self, enc: Encoded) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Scores (and hybrid novelty scores) of rows already encoded by ``self.preprocessor``."""
        logits = self.logits_encoded(enc)
        if self.novelty is None:
            return self.probability(logits).numpy(), None
        with torch.no_grad():
            z = self.novelty(torch.from_numpy(self.preprocessor.to_matrix(enc)))
            return hybrid_score(logits, z, self.threshold, self.novelty.threshold, self.fusion).numpy(), z.numpy()

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """A classifier's score of its logits: the sigmoid, or the calibrated probability."""
        return self.calibration(logits) if self.calibration is not None else torch.sigmoid(logits.float())

    def logits_encoded(self, enc: Encoded) -> torch.Tensor:
        """The classifier's logits (before the sigmoid) of rows already encoded by ``self.preprocessor``."""
        return self._split_mlp(torch.from_numpy(enc.dense), [torch.from_numpy(c) for c in enc.codes])

    def score_features(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of already preprocessed rows (float32, ``config['preprocessing']['feature_names']`` order)."""
        logits = self.net(x)
        if self.novelty is None:
            return self.probability(logits)
        return hybrid_score(logits, self.novelty(x), self.threshold, self.novelty.threshold, self.fusion)

    def uncalibrated_score(self, rows: Rows) -> np.ndarray:
        """A calibrated classifier's probability before its calibration: the sigmoid of its logits."""
        frame = self._frame(rows)
        with torch.no_grad():
            return torch.sigmoid(self.logits_encoded(self.preprocessor.encode(frame[self.columns])).float()).numpy()

    def predict(self, rows: Rows) -> pd.DataFrame:
        """One row per input row: ``score`` and ``is_anomaly`` (0/1)."""
        scores = self.score(rows)
        return pd.DataFrame({"score": scores, "is_anomaly": (scores >= self.threshold).astype(np.int64)})

    # ---------------------------------------------------------------- files
    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        save_file(self._weights, str(save_directory / WEIGHTS_NAME), metadata={"format": "pt"})
        (save_directory / CONFIG_NAME).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, Path], *, force_download: bool = False,
                        token: Any = None, cache_dir: Any = None, local_files_only: bool = False,
                        revision: Optional[str] = None, config: Optional[dict[str, Any]] = None) -> "NetadPredictor":
        """Load an exported folder, or a Hub repo id (downloaded, or from the local cache when the Hub cannot be
        reached or downloads are off). Missing, unreachable or broken models raise :class:`ModelLoadError`,
        one line naming the model and the cause."""
        model_id = str(pretrained_model_name_or_path)
        folder = Path(model_id)
        if folder.is_dir():
            config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
            if config is None and not config_path.is_file():
                raise ModelLoadError(f"{folder}: no config.json: not an exported netad model")
            if not weights_path.is_file():
                raise ModelLoadError(f"{folder}: no model.safetensors (the weights): not an exported netad model")
        else:
            config_path, weights_path = hub_files(model_id, revision=revision, cache_dir=cache_dir,
                                                   force_download=force_download, token=token,
                                                   local_files_only=local_files_only)
        return cls.from_files(config_path, weights_path, source=model_id, config=config)

    @classmethod
    def from_files(cls, config_path: Union[str, Path], weights_path: Union[str, Path], *, source: str,
                   config: Optional[dict[str, Any]] = None) -> "NetadPredictor":
        """The model in a config.json and a model.safetensors; problems raise :class:`ModelLoadError`
        naming ``source`` (the folder or repo id)."""
        if config is None:
            try:
                config = json.loads(Path(config_path).read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ModelLoadError(f"{source}: config.json is not JSON ({exc.msg}, line {exc.lineno})") from None
            except UnicodeDecodeError:
                raise ModelLoadError(f"{source}: config.json is not text") from None
            except OSError as exc:
                raise ModelLoadError(f"{source}: config.json cannot be read ({exc.strerror or first_line(exc)})") \
                    from None
        try:
            weights = load_file(str(weights_path))
        except OSError as exc:
            raise ModelLoadError(f"{source}: model.safetensors cannot be read "
                                 f"({exc.strerror or first_line(exc)})") from None
        except Exception as exc:  # noqa: BLE001 - safetensors' parse errors (truncated, not safetensors)
            raise ModelLoadError(f"{source}: model.safetensors is not a readable safetensors file "
                                 f"({first_line(exc)})") from None
        return cls.from_parts(config, weights, source=source)

    @classmethod
    def from_parts(cls, config: Any, weights: Any, *, source: str) -> "NetadPredictor":
        """``NetadPredictor(config, weights)``, with unusable contents raised as :class:`ModelLoadError`
        naming ``source``."""
        try:
            return cls(config=config, weights=weights)
        except ValueError as exc:
            raise ModelLoadError(f"{source}: {first_line(exc)}") from None

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path]) -> "NetadPredictor":
        """The model in a training checkpoint (``.ckpt``), read without Lightning; problems are one UserError."""
        return cls.from_checkpoint_dict(read_checkpoint(path, trained_model=True), source=str(path))

    @classmethod
    def from_checkpoint_dict(cls, ckpt: dict[str, Any], *, source: str = "checkpoint") -> "NetadPredictor":
        """The model in a checkpoint dict already read (and checked) by :func:`~netad.models.checkpoint.read_checkpoint`."""
        config, weights = artifact_from_checkpoint(ckpt)
        return cls.from_parts(config, weights, source=source)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: Optional[str], cache_dir: Any, force_download: bool,
                         local_files_only: bool, token: Any, config: Optional[dict[str, Any]] = None,
                         **kwargs: Any) -> "NetadPredictor":
        # ModelHubMixin's hook; from_pretrained above does the whole load
        return cls.from_pretrained(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                   local_files_only=local_files_only, token=token, config=config)


def load_predictor(model: Union[str, Path]) -> NetadPredictor:
    """A checkpoint file (``.ckpt``), an exported folder, or a Hub repo id (``user/name``)."""
    path = Path(model)
    if path.is_file():
        return NetadPredictor.from_checkpoint(path)
    if path.is_dir():  # a broken folder, like an unreachable or missing Hub repo, is a one-line ModelLoadError
        return NetadPredictor.from_pretrained(path)
    if path.suffix == ".ckpt" or "/" not in str(model) or str(model).count("/") != 1:
        raise UserError(f"model not found: {model} (a checkpoint, an exported folder or a Hub repo id user/name)")
    from netad.inference.hub import quiet_duplicate_hub_logs

    quiet_duplicate_hub_logs()
    return NetadPredictor.from_pretrained(str(model))
