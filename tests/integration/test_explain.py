"""Explanations where users see them: trained checkpoints carry the baseline, a hybrid names the part
that fired, predict.py --explain, and POST /predict?explain=K."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import fast_config, make_frame
from netad.cli import predict_main
from netad.inference import NetadPredictor
from netad.inference.explain import Explainer
from netad.serving.api import create_app
from netad.training.cv import run_single
from test_evaluation import assert_one_line_error, cli

FEATURES = ["packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol", "constant"]  # constant: read, not used


def train(root, csv_path, detector=None):
    extra = {} if detector is None else {"model__type": "hybrid", "hybrid__detector": detector,
                                         "hybrid__novelty_fpr": "0.1"}
    if detector == "pca":  # the fixture's rows span 6 directions: keeping half the variance leaves an error
        extra["hybrid__params"] = "{variance: 0.5}"
    cfg = fast_config(root, csv_path, training__num_epochs="8", **extra)
    run_single(cfg, run_name="x", quiet=True)
    return root / "checkpoints" / "best_model.ckpt"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    csv_path = root / "traffic.csv"
    make_frame(n=400, seed=8).to_csv(csv_path, index=False)
    out = {"csv": csv_path, "root": root}
    for name, detector in (("classifier", None), ("pca", "pca"), ("kmeans", "kmeans")):
        out[name] = train(root / name, csv_path, detector)
    return out


def test_trained_checkpoints_carry_a_baseline_that_is_a_real_row(models):
    model = NetadPredictor.from_checkpoint(models["classifier"])
    state = model.preprocessor.state
    baseline = np.array(state["baseline"])
    assert len(baseline) == len(state["feature_names"])
    block = [i for i, n in enumerate(state["feature_names"]) if n.startswith("protocol=")]
    assert sorted(baseline[block].tolist()) == [0.0] * (len(block) - 1) + [1.0]


@pytest.mark.parametrize("kind", ["pca", "kmeans"])
def test_novelty_shares_add_up_and_point_at_the_odd_column(models, kind):
    model = NetadPredictor.from_checkpoint(models[kind])
    frame = make_frame(n=50, seed=2)[FEATURES]
    x = torch.from_numpy(model.preprocessor.transform(frame))
    shares = model.novelty.feature_shares(x).numpy()
    totals = shares.sum(axis=1)
    assert np.allclose(totals[totals > 0], 1.0) and (totals > 0).mean() > 0.9
    if kind == "pca":
        # the shares are the reconstruction error's own parts; PCA's residual of one far-off value spreads over
        # the features its components tie it to, so it need not land on that value's column
        raw = model.novelty.raw
        np.testing.assert_allclose(raw.feature_errors(x).sum(dim=1).numpy(), raw(x).numpy(), rtol=1e-9)
        return
    odd = frame.copy()
    odd["inter_arrival_time"] = 500.0
    e = Explainer(model).explain_encoded(model.preprocessor.encode(odd))
    assert (e.columns[int(np.argmax(e.novelty[0]))]) == "inter_arrival_time"
    assert e.novelty[:, e.columns.index("inter_arrival_time")].min() > 0.9


def test_the_hybrid_names_the_part_that_fired(models):
    model = NetadPredictor.from_checkpoint(models["pca"])
    frame = make_frame(n=60, seed=2)[FEATURES]
    odd = frame.copy()
    odd["inter_arrival_time"] = 500.0  # far from every normal training row
    both = pd.concat([frame, odd], ignore_index=True)
    enc = model.preprocessor.encode(both)
    last = model.net.net[-1]
    with torch.no_grad():  # a classifier that never fires: only the novelty part can flag a row
        last.weight.zero_()
        last.bias.fill_(-30.0)
    e = Explainer(model).explain_encoded(enc)
    scores, z = model.score_encoded(enc)
    novel = z >= model.novelty.threshold.item()
    assert novel[60:].all() and (scores[60:] >= model.threshold).all()
    assert (e.explained_by[novel] == "novelty").all() and (e.explained_by[~novel] == "classifier").all()
    np.testing.assert_array_equal(e.contributions[novel], e.novelty[novel])
    with torch.no_grad():  # a classifier that always fires explains every row
        last.bias.fill_(30.0)
    e = Explainer(model).explain_encoded(enc)
    assert (e.explained_by == "classifier").all()
    np.testing.assert_array_equal(e.contributions, e.classifier)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_explain_writes_the_top_columns(models, tmp_path, capsys):
    frame = make_frame(n=200, seed=4)
    frame.insert(0, "note", ["a,b" if i % 7 == 0 else f"r{i}" for i in range(len(frame))])  # a field to quote
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    code, _, err = cli(predict_main, capsys, "--model", str(models["classifier"]), "--input", str(source),
                       "--output", str(out), "--explain", "2", "--quiet")
    assert code == 0, err
    rows = read_rows(out)
    assert list(rows[0])[-4:] == ["why_1", "why_1_contribution", "why_2", "why_2_contribution"]
    model = NetadPredictor.from_checkpoint(models["classifier"])
    e = Explainer(model).explain_encoded(model.preprocessor.encode(frame[FEATURES]))
    index, values = e.top(2)
    assert [r["why_1"] for r in rows] == [e.columns[i] for i in index[:, 0]]
    np.testing.assert_allclose([float(r["why_2_contribution"]) for r in rows], values[:, 1], atol=1e-6)
    assert [r["note"] for r in rows] == frame["note"].tolist()  # the record's own fields unchanged
    frame.drop(columns=["note"]).to_csv(source, index=False)  # plain lines: the fields joined onto them as read
    code, _, err = cli(predict_main, capsys, "--model", str(models["classifier"]), "--input", str(source),
                       "--output", str(out), "--explain", "2", "--quiet")
    assert code == 0, err
    plain = read_rows(out)
    assert [(r["why_1"], r["why_2_contribution"]) for r in plain] == [(r["why_1"], r["why_2_contribution"]) for r in rows]
    code, _, err = cli(predict_main, capsys, "--model", str(models["classifier"]), "--input", str(source),
                       "--output", str(out), "--explain", "2", "--explain-flagged", "--quiet")
    assert code == 0, err
    only = read_rows(out)
    assert 0 < sum(r["is_anomaly"] == "1" for r in only) < len(only)
    assert [r["why_1"] if r["is_anomaly"] == "1" else "" for r in rows] == [r["why_1"] for r in only]

    # a row the pandas route rejects: the rest keep their explanations; --explain-flagged leaves the others empty
    bad = frame.astype({"packet_size": object})
    bad.loc[5, "packet_size"] = "oops"
    bad.to_csv(source, index=False)
    code, _, err = cli(predict_main, capsys, "--model", str(models["classifier"]), "--input", str(source),
                       "--output", str(out), "--explain", "2", "--explain-flagged", "--quiet")
    assert code == 0, err
    rows = read_rows(out)
    keep = np.array([i for i in range(len(frame)) if i != 5])
    assert len(rows) == len(keep)
    flagged = np.array([r["is_anomaly"] == "1" for r in rows])
    assert 0 < flagged.sum() < len(rows)
    assert all(r["why_1"] == "" and r["why_1_contribution"] == "" for r, f in zip(rows, flagged) if not f)
    assert [r["why_1"] for r, f in zip(rows, flagged) if f] == [e.columns[i] for i in index[keep[flagged], 0]]


def test_predict_explain_for_a_hybrid_says_which_part(models, tmp_path, capsys):
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    make_frame(n=50, seed=4).to_csv(source, index=False)
    code, _, err = cli(predict_main, capsys, "--model", str(models["pca"]), "--input", str(source),
                       "--output", str(out), "--explain", "1", "--quiet")
    assert code == 0, err
    rows = read_rows(out)
    assert list(rows[0])[-5:] == ["is_anomaly", "novelty_score", "explained_by", "why_1", "why_1_contribution"]
    model = NetadPredictor.from_checkpoint(models["pca"])
    e = Explainer(model).explain_encoded(model.preprocessor.encode(make_frame(n=50, seed=4)[FEATURES]))
    assert [r["explained_by"] for r in rows] == e.explained_by.tolist()
    assert [r["why_1"] for r in rows] == [e.columns[i] for i in e.top(1)[0][:, 0]]


@pytest.mark.parametrize("args, needle", [
    (["--explain", "0"], "--explain 0: must be 1 or more"),
    (["--explain", "6"], "--explain 6: must be between 1 and 5"),
    (["--explain-flagged"], "need --explain K"),
])
def test_predict_explain_bad_input_is_one_line(models, tmp_path, capsys, args, needle):
    code, _, err = cli(predict_main, capsys, "--model", str(models["classifier"]), "--input", str(models["csv"]),
                       "--output", str(tmp_path / "o.csv"), "--quiet", *args)
    assert_one_line_error(code, err, needle)


def test_api_explains_records(models):
    model = NetadPredictor.from_checkpoint(models["pca"])
    client = TestClient(create_app(model))
    frame = make_frame(n=5, seed=6)[FEATURES]
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]
    body = client.post("/predict?explain=3", json=records).json()
    e = Explainer(model).explain_encoded(model.preprocessor.encode(frame))
    index, values = e.top(3)
    for i, p in enumerate(body["predictions"]):
        assert [x["column"] for x in p["explanation"]] == [e.columns[j] for j in index[i]]
        assert [x["value"] for x in p["explanation"]] == [records[i][e.columns[j]] for j in index[i]]
        np.testing.assert_allclose([x["contribution"] for x in p["explanation"]], values[i], rtol=1e-6, atol=1e-7)
        assert p["explained_by"] == e.explained_by[i]
    plain = client.post("/predict", json=records).json()["predictions"]
    assert [p["score"] for p in plain] == [p["score"] for p in body["predictions"]]
    assert "explanation" not in plain[0]
    upload = client.post("/predict/csv?explain=3", files={"file": ("r.csv", frame.to_csv(index=False))}).json()
    assert [p["explanation"] for p in upload["predictions"]] == [p["explanation"] for p in body["predictions"]]
    assert client.get("/model").json()["explanation"]["method"] == "deeplift"
    general = [dict(r, packet_size=int(round(r["packet_size"]))) for r in records]  # an int: the general route
    body = client.post("/predict?explain=1", json=general).json()
    assert [p["explanation"][0]["value"] for p in body["predictions"]] == [
        g[p["explanation"][0]["column"]] for g, p in zip(general, body["predictions"])]
    for bad in ("0", "6", "two", "-1", "\u00b2", "9" * 5000, "3.0", ""):
        r = client.post(f"/predict?explain={bad}", json=records[0])
        assert r.status_code == 422 and r.json()["field"] == "explain", r.text


def test_a_model_without_a_baseline_cannot_explain_but_still_scores(models, tmp_path, capsys):
    from netad.export.artifact import export_checkpoint

    folder = export_checkpoint(models["classifier"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    del config["preprocessing"]["baseline"]
    (folder / "config.json").write_text(json.dumps(config))
    model = NetadPredictor.from_pretrained(folder)
    client = TestClient(create_app(model))
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in make_frame(n=5, seed=6)[FEATURES].iloc[0].items()}
    assert client.post("/predict", json=record).status_code == 200
    r = client.post("/predict?explain=2", json=record)
    assert r.status_code == 422 and r.json()["field"] == "explain" and "train it again" in r.json()["error"]
    assert client.get("/model").json()["explanation"] is None
    code, _, err = cli(predict_main, capsys, "--model", str(folder), "--input", str(models["csv"]),
                       "--output", str(tmp_path / "o.csv"), "--explain", "2", "--quiet")
    assert_one_line_error(code, err, "train it again")
