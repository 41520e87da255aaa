"""The REST API: FastAPI's test client for every endpoint and bad input, and one real uvicorn process."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import make_frame, netad_server, tiny_model
from netad.serving.api import create_app
from netad.serving.batch import load_predictor, score_file


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ckpt = tiny_model(tmp_path_factory.mktemp("api"), seed=9, run_name="api")
    predictor = load_predictor(ckpt)
    return {"ckpt": ckpt, "predictor": predictor,
            "client": TestClient(create_app(predictor, model_name="tiny", max_records=50, max_body_bytes=20_000))}


def rows(n=5, seed=3):
    frame = make_frame(n=max(n, 4), seed=seed).drop(columns=["label"]).head(n)
    return json.loads(frame.to_json(orient="records")), frame


def test_predict_one_and_many_match_batch_scoring(served, tmp_path):
    client, predictor = served["client"], served["predictor"]
    records, frame = rows(8)
    r = client.post("/predict", json=records)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny" and body["api_version"] == "1" and body["threshold"] == predictor.threshold
    assert body["processing_time_ms"] > 0 and body["warnings"] == []
    scores = np.array([p["score"] for p in body["predictions"]])
    np.testing.assert_allclose(scores, predictor.score(frame), rtol=1e-6)
    assert [p["is_anomaly"] for p in body["predictions"]] == (scores >= predictor.threshold).tolist()
    one = client.post("/predict", json=records[0]).json()
    assert len(one["predictions"]) == 1 and one["predictions"][0]["score"] == pytest.approx(scores[0], rel=1e-6)
    # batch scoring of the same rows as a file gives the same scores
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    score_file(served["ckpt"], path, tmp_path / "out.csv", progress=False)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["score"], scores, rtol=1e-6)
    # and the CSV endpoint too
    r = client.post("/predict/csv", files={"file": ("in.csv", path.read_bytes(), "text/csv")})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["score"] for p in r.json()["predictions"]], scores, rtol=1e-6)


def test_health_model_and_docs(served):
    client = served["client"]
    assert client.get("/health").json() == {"status": "ok", "model": "tiny"}
    info = client.get("/model").json()
    assert info["threshold"] == served["predictor"].threshold
    names = [s["name"] for s in info["schema"]]
    assert names == served["predictor"].columns
    assert next(s for s in info["schema"] if s["name"] == "protocol")["categories"]
    assert client.get("/docs").status_code == 200 and "/predict" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("case,status,needle", [
    ("missing", 422, ("missing field", "bytes")),
    ("unknown", 422, ("unknown field", "ttl")),
    ("wrong_type", 422, ("expected a number", "packet_size")),
    ("nan", 422, ("not a finite number", "inter_arrival_time")),
    ("bool", 422, ("expected true or false", "is_tcp")),
    ("empty", 422, ("no records", None)),
    ("too_many", 413, ("too many records", None)),
    ("too_big", 413, ("body too large", None)),
    ("malformed", 400, ("malformed JSON", None)),
    ("not_object", 422, ("must be a JSON object", None)),
])
def test_bad_input_is_a_4xx_naming_the_problem(served, case, status, needle):
    client = served["client"]
    records, _ = rows(1)
    record = records[0]
    if case == "missing":
        body = json.dumps({k: v for k, v in record.items() if k != "bytes"})
    elif case == "unknown":
        body = json.dumps(dict(record, ttl=64))
    elif case == "wrong_type":
        body = json.dumps(dict(record, packet_size="big"))
    elif case == "nan":
        body = json.dumps(dict(record, inter_arrival_time=float("nan")))  # the NaN literal
    elif case == "bool":
        body = json.dumps(dict(record, is_tcp="maybe"))
    elif case == "empty":
        body = "[]"
    elif case == "too_many":
        body = json.dumps([record] * 51)
    elif case == "too_big":
        body = json.dumps([dict(record, protocol="x" * 30_000)])
    elif case == "malformed":
        body = '{"packet_size": 1,'
    else:
        body = "[1, 2]"
    r = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()
    assert needle[0] in error["error"]
    if needle[1]:
        assert error["field"] == needle[1]
    assert client.get("/health").status_code == 200  # still serving


def test_unseen_category_is_scored_and_reported(served):
    records, _ = rows(2)
    records[1]["protocol"] = "sctp"
    r = served["client"].post("/predict", json=records)
    assert r.status_code == 200
    assert r.json()["warnings"] == [{"record": 1, "field": "protocol", "value": "sctp",
                                     "note": "unseen category: scored through the unknown bucket"}]


def test_csv_endpoint_bad_values_and_missing_columns(served):
    client = served["client"]
    _, frame = rows(4)
    broken = frame.astype({"bytes": object})
    broken.loc[2, "bytes"] = "lots"
    r = client.post("/predict/csv", files={"file": ("a.csv", broken.to_csv(index=False).encode(), "text/csv")})
    assert r.status_code == 422 and r.json()["record"] == 2 and "bytes" in r.json()["reason"]
    r = client.post("/predict/csv", files={"file": ("a.csv", frame.drop(columns=["bytes"]).to_csv(index=False).encode(),
                                                    "text/csv")})
    assert r.status_code == 422 and r.json()["field"] == "bytes"
    r = client.post("/predict/csv", files={"file": ("a.csv", b"", "text/csv")})
    assert r.status_code == 400


def test_api_key_guards_everything_but_health(served, caplog):
    client = TestClient(create_app(served["predictor"], api_key="s3cret-key"))
    records, _ = rows(1)
    records[0]["protocol"] = "unique-marker-value"
    assert client.get("/health").status_code == 200
    assert client.post("/predict", json=records).status_code == 401
    assert client.post("/predict", json=records, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/model").status_code == 401
    with caplog.at_level("DEBUG", logger="netad.serving"):
        r = client.post("/predict", json=records, headers={"X-API-Key": "s3cret-key"})
    assert r.status_code == 200
    assert "scored 1 records" in caplog.text  # counts only
    assert "unique-marker-value" not in caplog.text and "s3cret-key" not in caplog.text


def test_real_uvicorn_process_on_loopback(served):
    import httpx

    with netad_server(served["ckpt"], "--api-key-env", "NETAD_TEST_KEY",
                      env=dict(os.environ, NETAD_TEST_KEY="k-123")) as base:
        records, frame = rows(3)
        r = httpx.post(f"{base}/predict", json=records, headers={"X-API-Key": "k-123"}, timeout=10)
        assert r.status_code == 200
        np.testing.assert_allclose([p["score"] for p in r.json()["predictions"]],
                                   served["predictor"].score(frame), rtol=1e-6)
        assert httpx.post(f"{base}/predict", json=records, timeout=10).status_code == 401
