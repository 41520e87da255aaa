"""Score a saved checkpoint on labelled rows: the test hold-out recorded at training time, or any CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from netad.config import config_from_dict
from netad.data.loading import load_table
from netad.data.preprocessing import TabularPreprocessor
from netad.errors import UserError
from netad.evaluation.metrics import compute_metrics, false_positive_rate
from netad.models.classifier import load_classifier, predict_scores


def evaluate_checkpoint(checkpoint: str | Path, data_path: Optional[str | Path] = None) -> dict[str, Any]:
    """Metrics at the stored threshold. Without ``data_path``: the training run's test hold-out."""
    model = load_classifier(checkpoint)
    meta = model.metadata
    cfg = config_from_dict(meta["config"], f"{checkpoint} (saved config)")
    table = load_table(cfg.data, data_path)
    if data_path is None:
        rows = np.asarray(torch.as_tensor(meta["test_indices"]).tolist(), dtype=np.int64)
        if len(table) <= rows.max(initial=-1):
            raise UserError(f"{table.source} has changed since training: the recorded test rows do not exist")
        features, labels = table.features.iloc[rows], table.labels[rows]
        source = f"{table.source} (test hold-out, {len(rows)} rows)"
    else:
        features, labels, source = table.features, table.labels, table.source
    pre = TabularPreprocessor.from_state(model.preprocessor_state)
    scores = predict_scores(model, torch.from_numpy(pre.transform(features)))
    threshold = float(model.threshold)
    metrics = compute_metrics(scores, labels, threshold)
    metrics["fpr"] = false_positive_rate(scores, labels, threshold)
    return {"data": source, "n_rows": int(len(labels)), "n_anomalies": int(labels.sum()),
            "threshold": threshold, "metrics": metrics}
