"""GET /metrics: Prometheus text that prometheus_client's own parser reads, counters that rise with requests,
the API key rule, and a rolling window whose per-column PSI is quiet on training-like records and loud on
shifted ones."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_frame, tiny_model
from netad.inference import NetadPredictor
from netad.serving.api import create_app

COLUMNS = ["packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol", "constant"]


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def records(frame):
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame[COLUMNS].to_dict("records")]


def test_metrics_parse_and_counters_rise(tmp_path):
    model = NetadPredictor.from_checkpoint(tiny_model(tmp_path, seed=3, run_name="m"))
    client = TestClient(create_app(model, api_key="k3y", drift_window=300))
    assert client.get("/metrics").status_code == 401  # the API key rule, as for every endpoint but /health
    before = scrape(client, **{"X-API-Key": "k3y"})
    assert before[("netad_records_scored_total", ())] == 0
    frame = make_frame(n=200, seed=5)
    for i in range(3):
        assert client.post("/predict", json=records(frame.iloc[i * 50:(i + 1) * 50]),
                           headers={"X-API-Key": "k3y"}).status_code == 200
    unseen = records(frame.iloc[:4])
    unseen[0]["protocol"] = "quic"
    client.post("/predict", json=unseen, headers={"X-API-Key": "k3y"})
    client.post("/predict", json={"packet_size": 1}, headers={"X-API-Key": "k3y"})  # 422: fields missing
    after = scrape(client, **{"X-API-Key": "k3y"})
    assert after[("netad_records_scored_total", ())] == 154
    assert after[("netad_requests_total", (("endpoint", "/predict"), ("status", "200")))] == 4
    assert after[("netad_requests_total", (("endpoint", "/predict"), ("status", "422")))] == 1
    assert after[("netad_requests_total", (("endpoint", "/metrics"), ("status", "401")))] == 1
    assert after[("netad_request_errors_total", (("endpoint", "/predict"),))] == 1
    assert after[("netad_unknown_category_values_total", ())] == 1
    assert after[("netad_request_latency_seconds_count", (("endpoint", "/predict"),))] == 5
    scores = model.score(frame.iloc[:150][COLUMNS])
    flagged = int((scores >= model.threshold).sum()) + int((model.score(frame.iloc[:4][COLUMNS].assign(
        protocol=["quic", *frame["protocol"].iloc[1:4]])) >= model.threshold).sum())
    assert after[("netad_records_flagged_total", ())] == flagged
    assert after[("netad_window_records", ())] == 154
    assert after[("netad_window_unknown_category_rate", ())] == 1 / 154


def test_window_psi_is_quiet_on_training_like_records_and_loud_on_shifted_ones(tmp_path):
    ckpt = tiny_model(tmp_path, seed=3, run_name="w")
    model = NetadPredictor.from_checkpoint(ckpt)
    client = TestClient(create_app(model, drift_window=300))
    like = make_frame(n=300, seed=3)  # the fixture tiny_model trained on: training-like rows
    client.post("/predict", json=records(like))
    quiet = scrape(client)
    psi = {k[1][0][1]: v for k, v in quiet.items() if k[0] == "netad_column_psi"}
    assert set(psi) == {"packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol"}
    assert max(psi.values()) < 0.2, psi
    shifted = like.assign(inter_arrival_time=like["inter_arrival_time"] + 8.0)
    client.post("/predict", json=records(shifted))  # fills the 300-record window
    loud = {k[1][0][1]: v for k, v in scrape(client).items() if k[0] == "netad_column_psi"}
    assert loud["inter_arrival_time"] > 1.0 and loud["packet_size"] < 0.2
    assert np.isclose(scrape(client)[("netad_window_records", ())], 300)
