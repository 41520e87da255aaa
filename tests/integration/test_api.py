"""The REST API: FastAPI's test client for every endpoint and bad input, and one real uvicorn process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import make_frame, netad_server, tiny_model
from netad.cli import serve_main
from netad.serving.api import create_app
from netad.inference import load_predictor
from netad.serving.batch import score_file


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


def test_json_records_encode_exactly_as_the_same_rows_in_a_dataframe():
    """The API turns records into the encoder's input and calls the preprocessing's own encoder: the
    same arrays as encode() on a DataFrame of the records, for booleans written every accepted way,
    categories given as numbers, an unseen one and log-transformed columns."""
    from netad.data.preprocessing import TabularPreprocessor
    from netad.serving.api import records_to_encoded

    train = make_frame(n=200, seed=4).drop(columns=["label", "constant"])
    pre = TabularPreprocessor(log_transform="auto").fit(train)
    assert any(pre.state["numeric"]["log"])
    records, _ = rows(10, seed=6)
    for record, flag in zip(records, [True, False, 1, 0, "yes", "No", " T ", "f", "TRUE", "0"]):
        record["is_tcp"] = flag
        del record["constant"]
    records[2]["protocol"], records[5]["protocol"] = 7, "sctp"
    enc, warnings = records_to_encoded(pre, records, {c: {} for c in pre.state["input_columns"]})
    expected = pre.encode(pd.DataFrame(records))
    np.testing.assert_array_equal(enc.dense, expected.dense)
    np.testing.assert_array_equal(enc.codes[0], expected.codes[0])
    k = len(pre.state["numeric"]["columns"])
    assert enc.dense[:, k].tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    assert [(w["record"], w["value"]) for w in warnings] == [(2, "7"), (5, "sctp")]


def test_typed_records_encode_exactly_as_the_general_route():
    """msgspec's typed decoding (the route a valid body takes) gives the very arrays of the general
    route (dicts, checked field by field), for field names that are not identifiers, numbers written
    as integers, exponents and long decimals, booleans written every accepted way and categories
    given as numbers."""
    from netad.data.preprocessing import TabularPreprocessor
    from netad.serving.api import TypedRecords, records_to_encoded

    train = make_frame(n=200, seed=4).drop(columns=["label", "constant"]).rename(
        columns={"packet_size": "packet size", "bytes": "class"})
    pre = TabularPreprocessor(log_transform="auto").fit(train)
    records = json.loads(train.head(10).to_json(orient="records"))
    for record, flag, number in zip(records, [True, False, 1, 0, "yes", "No", " T ", "f", "TRUE", "0"],
                                    [0, -0.0, 1e-300, 12345678901234567890, 0.1, 2.5e10, 7, 1.7976931348623157e308,
                                     123456789012345678901234567890, -3]):
        record["is_tcp"], record["class"] = flag, number
    records[2]["protocol"], records[5]["protocol"] = 7, "sctp"
    schema = {c: {} for c in pre.state["input_columns"]}
    typed = TypedRecords(pre, schema)
    body = json.dumps(records).encode()
    decoded = typed.decode(body)
    assert decoded is not None and len(decoded) == 10
    enc, warnings = typed.encode(decoded)
    expected, expected_warnings = records_to_encoded(pre, json.loads(body), schema)
    np.testing.assert_array_equal(enc.dense, expected.dense)
    np.testing.assert_array_equal(enc.codes[0], expected.codes[0])
    assert warnings == expected_warnings and [w["value"] for w in warnings] == ["7", "sctp"]
    one = typed.decode(json.dumps(records[3]).encode())
    np.testing.assert_array_equal(typed.encode(one)[0].dense, expected.dense[3:4])
    # what it does not take goes the general route, which names the problem
    for bad in [b"[", b"{}", b"[1]", json.dumps([{**records[0], "extra": 1}]).encode(),
                json.dumps([{**records[0], "class": "1"}]).encode(), json.dumps([{**records[0], "class": True}]).encode(),
                ("[" + with_raw(records[0], "class", "NaN") + "]").encode(),
                ("[" + with_raw(records[0], "class", "1e400") + "]").encode()]:
        assert typed.decode(bad) is None, bad


@pytest.mark.parametrize("text", ["0.1", "1e-320", "4.9e-324", "2.2250738585072011e-308", "9007199254740993",
                                  "0.30000000000000004441", "1.00000000000000011102230246251565404236316680908203125",
                                  "123456789012345678901234567890", "-0", "1E+2", "7.0e-10"])
def test_typed_records_read_numbers_as_python_does(text):
    """A number's float64 is the correctly rounded one, as the general route's parsers give it."""
    from netad.data.preprocessing import TabularPreprocessor
    from netad.serving.api import TypedRecords

    pre = TabularPreprocessor().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}))
    typed = TypedRecords(pre, {"x": {}})
    value = typed.encode(typed.decode(f'{{"x": {text}}}'.encode()))[0]
    expected = pre.encode(pd.DataFrame({"x": [float(text)]}))
    assert value.dense.tobytes() == expected.dense.tobytes(), text


def test_a_valid_body_takes_the_typed_route_and_a_bad_one_the_general(served, monkeypatch):
    from netad.serving import api

    general = []
    loads = api._loads
    monkeypatch.setattr(api, "_loads", lambda raw: general.append(raw) or loads(raw))
    client = TestClient(create_app(served["predictor"], model_name="tiny"))
    records, _ = rows(3)
    assert client.post("/predict", json=records).status_code == 200
    assert client.post("/predict", json=records[0]).status_code == 200
    assert general == []
    records[1]["bytes"] = "12"
    r = client.post("/predict", json=records)
    assert r.status_code == 422 and r.json()["field"] == "bytes" and len(general) == 1


@pytest.mark.parametrize("value", [2, 1.0, None, "maybe", "", [True]])
def test_a_value_the_preprocessing_does_not_read_as_a_boolean_is_a_422(served, value):
    """The API refuses exactly what the preprocessing's own check refuses in a DataFrame."""
    records, _ = rows(2)
    records[1]["is_tcp"] = value
    r = served["client"].post("/predict", json=records)
    assert r.status_code == 422, r.text
    assert r.json() == {"error": "wrong type: expected true or false", "record": 1, "field": "is_tcp"}
    reasons = served["predictor"].preprocessor.row_problems(pd.DataFrame(records))
    assert reasons[0] == "" and "is_tcp" in reasons[1]


def with_raw(record, field, text):
    """The record as JSON text, with ``text`` written as-is for the value of ``field``."""
    return "{" + ", ".join(f"{json.dumps(k)}: {text if k == field else json.dumps(v)}" for k, v in record.items()) + "}"


def post_raw(client, body, path="/predict"):
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


HUGE = "1" + "0" * 400  # 10**400: an int no float holds
LONGER = "9" * 5000  # beyond Python's int conversion limit (4300 digits) too


@pytest.mark.parametrize("field,text", [
    ("packet_size", HUGE), ("bytes", "-" + HUGE), ("inter_arrival_time", LONGER),
    ("is_tcp", HUGE), ("is_tcp", LONGER),
])
def test_integers_too_large_for_a_float_are_a_422_naming_the_field(served, field, text):
    records, _ = rows(3)
    body = "[" + ", ".join(json.dumps(r) for r in records[:2]) + ", " + with_raw(records[2], field, text) + "]"
    r = post_raw(served["client"], body)
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["record"] == 2 and error["field"] == field
    assert ("too large" if field != "is_tcp" else "expected true or false") in error["error"]


@pytest.mark.parametrize("text", [HUGE, LONGER])
def test_huge_integers_in_a_category_field_are_text_like_other_numbers(served, text):
    records, _ = rows(1)
    r = post_raw(served["client"], with_raw(records[0], "protocol", text))
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == [{"record": 0, "field": "protocol", "value": text,
                                     "note": "unseen category: scored through the unknown bucket"}]


@pytest.mark.parametrize("field", ["packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol", "constant"])
def test_a_lone_surrogate_in_any_field_is_a_422_naming_it(served, field):
    """The standard library reads "\\ud800" (orjson refuses it); echoed in a reply it would fail, so it
    is refused field by field. The test client re-raises any server error, so a 500 cannot pass."""
    records, _ = rows(2)
    text = '[1, {"a": "x\\ud800"}]' if field == "constant" else '"\\ud800"'  # nested in the unused column
    r = post_raw(served["client"], f"[{json.dumps(records[0])}, {with_raw(records[1], field, text)}]")
    assert r.status_code == 422, r.text
    assert r.json() == {"error": "invalid text: a lone surrogate (such as \\ud800) is not a Unicode character",
                        "record": 1, "field": field}


def test_a_lone_surrogate_in_a_field_name_or_a_record_is_a_422(served):
    records, _ = rows(1)
    body = json.dumps(records[0])[:-1] + ', "\\udc00x": 1}'
    r = post_raw(served["client"], body)
    assert r.status_code == 422 and r.json()["record"] == 0 and r.json()["field"] == "\\udc00x"  # the escape
    r = post_raw(served["client"], '["\\ud800"]')
    assert r.status_code == 422 and r.json()["record"] == 0 and "field" not in r.json()
    r = post_raw(served["client"], '{"a": NaN, "b": "\\ud800"}')  # one object: record 0
    assert r.status_code == 422 and r.json()["field"] == "b"


@pytest.mark.parametrize("value", [1e308, -1e308, 1e60])
def test_values_that_overflow_the_float32_features_are_a_422_on_both_endpoints(served, value):
    """Finite in float64, but inf in the model's float32 features once scaled: a null score before."""
    client = served["client"]
    records, frame = rows(4)
    records[2]["bytes"] = value
    r = client.post("/predict", json=records)
    assert r.status_code == 422, r.text
    assert r.json() == {"error": "value too large for the model: overflows its float32 features after scaling",
                        "record": 2, "field": "bytes"}
    frame = frame.copy()
    frame.loc[2, "bytes"] = value
    r = client.post("/predict/csv", files={"file": ("a.csv", frame.to_csv(index=False).encode(), "text/csv")})
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["record"] == 2 and (error.get("field") == "bytes" or "'bytes'" in error.get("reason", "")), error


def test_a_score_that_is_not_a_number_is_a_422_never_a_null(served, monkeypatch):
    """The last guard: features finite, the network still overflowing (faked here)."""
    predictor = served["predictor"]
    real = predictor.score_encoded

    def overflowing(enc):
        scores, novelty = real(enc)
        scores = scores.copy()
        scores[1] = np.nan
        return scores, novelty

    monkeypatch.setattr(predictor, "score_encoded", overflowing)
    records, _ = rows(3)
    records[1]["packet_size"] = 1e30
    r = served["client"].post("/predict", json=records)
    assert r.status_code == 422, r.text
    assert r.json()["record"] == 1 and r.json()["field"] == "packet_size"


def endless_request(app, path, content_type, first, chunk, most=2000):
    """One POST through the ASGI app whose body never ends (``first``, then ``chunk`` after chunk; a
    disconnect after ``most`` chunks bounds the test): the response messages and the body bytes pulled."""
    pulled, calls, messages = 0, 0, []

    async def receive():
        nonlocal pulled, calls
        calls += 1
        if calls > most:
            return {"type": "http.disconnect"}
        body = first if calls == 1 else chunk
        pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", content_type), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    return messages, pulled


@pytest.mark.parametrize("path", ["/predict", "/predict/csv"])
def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_the_limit(served, path):
    """A chunked body has no Content-Length: the guard counts the bytes as they come and answers 413
    once the limit is passed, without reading the rest."""
    app = create_app(served["predictor"], max_body_bytes=20_000)
    if path == "/predict":
        content_type, first = b"application/json", b"["
    else:
        content_type = b"multipart/form-data; boundary=netadtestboundary"
        first = (b"--netadtestboundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
                 b"Content-Type: text/csv\r\n\r\npacket_size,bytes\r\n")
    messages, pulled = endless_request(app, path, content_type, first, b"1," * 500)
    starts = [m for m in messages if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [413]  # one answer, the 413
    assert (b"connection", b"close") in starts[0]["headers"]  # the server stops reading the connection too
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert json.loads(body) == {"error": "body too large", "limit_bytes": 20_000}
    assert 20_000 < pulled <= 20_000 + 1000 + len(first)  # nothing read past the chunk that crossed the limit


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_real_server_answers_413_to_a_chunked_body_before_it_ends(served):
    """Against uvicorn: a chunked body past --max-body-mb that never ends gets its 413 and the connection
    closed; before, the server read on, waiting for the rest (here: the socket timeout)."""
    with netad_server(served["ckpt"], "--max-body-mb", "0.01") as base:  # 10,485 bytes
        port = int(base.rsplit(":", 1)[1])
        chunk = b" " * 4096
        request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 4)
        reply = b""
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(request)  # 16 KiB and no last chunk: the body is never complete
            try:
                while data := sock.recv(65536):
                    reply += data
            except ConnectionResetError:  # closed with bytes unread: the server reads no more either way
                pass
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), reply[:300]
        assert json.loads(body) == {"error": "body too large", "limit_bytes": 10_485}
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:  # still serving
            assert r.status == 200
        import httpx

        records, frame = rows(3)
        text = json.dumps(records).encode()
        r = httpx.post(f"{base}/predict", content=iter([text[:50], text[50:]]),  # chunked, within the limit
                       headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 200 and r.request.headers.get("transfer-encoding") == "chunked"
        np.testing.assert_allclose([p["score"] for p in r.json()["predictions"]],
                                   served["predictor"].score(frame), rtol=1e-6)


@pytest.mark.parametrize("option,value,needle", [
    ("--threads", "0", "must be 1 or more"), ("--threads", "-3", "must be 1 or more"),
    ("--port", "99999", "must be between 1 and 65535"), ("--port", "0", "must be between 1 and 65535"),
    ("--port", "-1", "must be between 1 and 65535"),
    ("--max-records", "0", "must be 1 or more"),
    ("--max-body-mb", "0", "above 0"), ("--max-body-mb", "-2", "above 0"), ("--max-body-mb", "nan", "above 0"),
    ("--max-body-mb", "inf", "above 0"),
])
def test_serve_refuses_bad_options_in_one_line_before_loading_the_model(option, value, needle, tmp_path, capsys):
    """The model does not exist: an error about the option, not the model, says it was checked first."""
    rc = serve_main(["--model", str(tmp_path / "no-such-model.ckpt"), option, value])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"error: {option} ") and needle in err and err.count("\n") == 1, err


@pytest.mark.parametrize("option,value", [("--threads", "0"), ("--port", "99999")])
def test_serve_process_exits_2_with_one_line_on_a_bad_option(served, option, value):
    """With a real model: before, --threads 0 was a traceback and --port 99999 listened on another port."""
    proc = subprocess.run([sys.executable, "-m", "netad", "serve", "--model", str(served["ckpt"]), option, value],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"error: {option} {value}: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Serving" not in proc.stdout


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
    _, frame = rows(2)
    upload = {"file": ("a.csv", frame.to_csv(index=False).encode(), "text/csv")}
    assert client.post("/predict/csv", files=upload).status_code == 401
    for path in ("/docs", "/openapi.json", "/redoc", "/no-such-path"):
        assert client.get(path).status_code == 401, path
    assert client.get("/").status_code == 200 and "<canvas" in client.get("/").text  # the page is open
    assert client.post("/predict/csv", files=upload, headers={"X-API-Key": "s3cret-key"}).status_code == 200
    with caplog.at_level("DEBUG", logger="netad.serving"):
        r = client.post("/predict", json=records, headers={"X-API-Key": "s3cret-key"})
    assert r.status_code == 200
    assert "scored 1 records" in caplog.text  # counts only
    assert "unique-marker-value" not in caplog.text and "s3cret-key" not in caplog.text


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
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


def test_a_model_name_with_html_is_shown_as_text_on_the_page(served):
    client = TestClient(create_app(served["predictor"], model_name='<script>alert("x")</script>'))
    page = client.get("/").text
    assert '<script>alert("x")</script>' not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
