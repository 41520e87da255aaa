"""The exported model: raw rows in, scores and labels out, without Lightning or the training config.

An exported folder (or a Hub repo) holds ``model.safetensors`` (weights) and ``config.json``
(architecture, the fitted preprocessing, threshold, label meaning, hybrid novelty state):
loading never unpickles anything.

    from netad.hub import NetadPredictor
    model = NetadPredictor.from_pretrained("user/netad-model")   # or a local folder
    scored = model.predict("traffic.csv")                         # score and is_anomaly per row
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd
import torch
from huggingface_hub import ModelHubMixin, hf_hub_download
from safetensors.torch import load_file, save_file

from netad.data.preprocessing import Encoded, TabularPreprocessor
from netad.models.mlp import MLP, SplitInputMLP
from netad.models.novelty import combine, scorer_from_state

ARTIFACT_FORMAT = "netad-model"
ARTIFACT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
Rows = Union[pd.DataFrame, list, dict, str, Path]


class NetadPredictor(
    ModelHubMixin,
    library_name="netad",
    tags=["anomaly-detection", "network-security", "tabular-classification"],
    license="mit",
):
    """Score raw network records with an exported netad model."""

    def __init__(self, config: dict[str, Any], weights: Optional[dict[str, torch.Tensor]] = None) -> None:
        if config.get("format") != ARTIFACT_FORMAT or config.get("format_version") != ARTIFACT_VERSION:
            raise ValueError("config.json is not a netad model (format netad-model, version 1)")
        if weights is None:
            raise ValueError("weights are missing (model.safetensors)")
        self.config = config
        self._weights = {k: v.detach().contiguous() for k, v in weights.items()}
        arch = config["architecture"]
        self.net = MLP(arch["input_dim"], arch["hidden_dims"], arch["dropout"], arch["activation"])
        self.net.load_state_dict({k[len("mlp."):]: v for k, v in weights.items() if k.startswith("mlp.")})
        self.net.eval()
        self.preprocessor = TabularPreprocessor.from_state(config["preprocessing"])
        self.threshold = float(config["threshold"])
        self.novelty = None
        if config.get("novelty"):
            tensors = {k[len("novelty."):]: v for k, v in weights.items() if k.startswith("novelty.")}
            self.novelty = scorer_from_state(dict(config["novelty"], tensors=tensors))
        pre = self.preprocessor.state
        self._split_mlp = SplitInputMLP(self.net, len(pre["numeric"]["columns"]) + len(pre["boolean"]["columns"]),
                                        self.preprocessor.block_sizes())

    # ---------------------------------------------------------------- scoring
    @property
    def columns(self) -> list[str]:
        """The raw feature columns the model reads."""
        return list(self.preprocessor.state["input_columns"])

    def _frame(self, rows: Rows) -> pd.DataFrame:
        if isinstance(rows, (str, Path)):
            data = self.config["data"]
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
        logits = self._split_mlp(torch.from_numpy(enc.dense), [torch.from_numpy(c) for c in enc.codes])
        p = torch.sigmoid(logits.float())
        if self.novelty is None:
            return p.numpy(), None
        with torch.no_grad():
            z = self.novelty(torch.from_numpy(self.preprocessor.to_matrix(enc)))
            return combine(p, z, self.threshold, self.novelty.threshold).numpy(), z.numpy()

    def score_features(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of already preprocessed rows (float32, ``config['preprocessing']['feature_names']`` order)."""
        p = torch.sigmoid(self.net(x).float())
        if self.novelty is not None:
            p = combine(p, self.novelty(x), self.threshold, self.novelty.threshold)
        return p

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
    def _from_pretrained(cls, *, model_id: str, revision: Optional[str], cache_dir: Any, force_download: bool,
                         local_files_only: bool, token: Any, config: Optional[dict[str, Any]] = None,
                         **kwargs: Any) -> "NetadPredictor":
        folder = Path(model_id)
        if folder.is_dir():
            weights_path = folder / WEIGHTS_NAME
            if config is None:
                config = json.loads((folder / CONFIG_NAME).read_text())
        else:
            weights_path = Path(hf_hub_download(repo_id=model_id, filename=WEIGHTS_NAME, revision=revision,
                                                cache_dir=cache_dir, force_download=force_download, token=token,
                                                local_files_only=local_files_only))
            if config is None:
                raise ValueError(f"{model_id}: no config.json in the repo")
        return cls(config=config, weights=load_file(str(weights_path)))

