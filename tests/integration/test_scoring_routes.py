"""Every PyTorch route to a score gives the very same numbers for the same rows: the predictor on a DataFrame and
on records, test.py's evaluation, the batch scorer (its Arrow and its pandas route) and the REST API.

Each route gets all rows in one call (fewer than the predictor's 2048-row slice) under one thread, so equal code
on equal inputs must give equal bits, on any CPU. The rows' numbers have few decimals: every CSV parser reads
them as the same float64.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import fast_config, make_frame
from netad.threads import limit_threads

N_ROWS = 300


@pytest.fixture(scope="module", params=["classifier", "hybrid"])
def model(request, tmp_path_factory):
    """A small seeded model (a classifier, or a hybrid with a PCA novelty part) and its best_model.ckpt."""
    from netad.training.cv import run_single

    root = tmp_path_factory.mktemp(f"routes-{request.param}")
    csv_path = root / "traffic.csv"
    make_frame(n=300, seed=7).to_csv(csv_path, index=False)
    extra = {"model__type": "hybrid", "hybrid__detector": "pca", "hybrid__params": "{variance: 0.5}"} \
        if request.param == "hybrid" else {}
    run_single(fast_config(root, csv_path, **extra), run_name="routes", quiet=True)
    return root / "checkpoints" / "best_model.ckpt"


def rows() -> pd.DataFrame:
    """Labelled rows unlike the training rows (another seed), with a category never seen in training."""
    frame = make_frame(n=N_ROWS, seed=8)
    for col in ("packet_size", "inter_arrival_time"):
        frame[col] = frame[col].round(4)
    frame.loc[::11, "protocol"] = "gre"  # the unknown bucket
    return frame


def fixed_point(values: np.ndarray) -> np.ndarray:
    """Scores as the batch scorer writes them: fixed point with SCORE_DECIMALS decimals."""
    from netad.serving.batch import SCORE_DECIMALS

    return np.char.mod(f"%.{SCORE_DECIMALS}f", np.asarray(values, dtype=np.float64))


def batch_scores(ckpt, frame: pd.DataFrame, path, quoted: bool) -> pd.DataFrame:
    """``score_file`` on the rows as a file: plain (the Arrow route) or with a quoted pass-through field
    (quotes send the file's one block through pandas). Scores come back as the text written."""
    from netad.serving.batch import score_file

    notes = pd.Series(["plain"] * len(frame), index=frame.index)
    if quoted:
        notes.iloc[3] = 'says "hi", twice'  # a comma and quotes: written quoted
    frame.assign(note=notes).to_csv(path, index=False)
    assert (b'"' in path.read_bytes()) is quoted
    out = path.with_name(path.stem + "_scored.csv")
    result = score_file(ckpt, path, out, progress=False)
    assert result.n_scored == len(frame) and result.rejects is None
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert written["note"].tolist() == notes.tolist()  # the pass-through field as it was
    return written


def test_every_route_scores_the_same_rows_identically(model, tmp_path):
    from fastapi.testclient import TestClient

    from netad.evaluation.evaluate import evaluate_checkpoint
    from netad.inference import load_predictor
    from netad.serving.api import create_app

    labelled = rows()
    frame = labelled.drop(columns=["label"])
    records = frame.to_dict(orient="records")
    labelled_csv = tmp_path / "labelled.csv"
    labelled.to_csv(labelled_csv, index=False)
    with limit_threads(1):
        predictor = load_predictor(model)
        by_frame, novelty = predictor.score_with_novelty(frame)
        by_records = predictor.score(records)
        evaluated = evaluate_checkpoint(model, labelled_csv, n_bootstrap=0)  # test.py's path
        fast = batch_scores(model, frame, tmp_path / "plain.csv", quoted=False)
        slow = batch_scores(model, frame, tmp_path / "quoted.csv", quoted=True)
        response = TestClient(create_app(predictor)).post("/predict", json=records)
    assert response.status_code == 200, response.text
    by_api = np.array([p["score"] for p in response.json()["predictions"]], dtype=np.float64)

    assert by_frame.dtype == np.float32 and len(by_frame) == N_ROWS
    assert np.unique(by_frame).size > N_ROWS // 2  # scores that tell rows apart: equality below means something
    assert np.array_equal(by_records, by_frame)
    assert np.array_equal(evaluated.scores, by_frame)
    assert evaluated.n_rows == N_ROWS and np.array_equal(evaluated.labels, labelled["label"].to_numpy(int))
    assert np.array_equal(by_api, by_frame.astype(np.float64))
    for name, written in (("arrow", fast), ("pandas", slow)):
        assert np.array_equal(written["score"].to_numpy(str), fixed_point(by_frame)), name
        assert written["is_anomaly"].astype(int).tolist() == (by_frame >= predictor.threshold).astype(int).tolist()
        if novelty is not None:
            assert np.array_equal(written["novelty_score"].to_numpy(str), fixed_point(novelty)), name
    assert (novelty is not None) == (predictor.config["model_type"] == "hybrid")
