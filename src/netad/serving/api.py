"""REST API over an exported model (FastAPI): ``python -m netad serve --model PATH_OR_REPO``.

Endpoints: ``POST /predict`` (one record or a list), ``POST /predict/csv`` (a CSV upload),
``GET /health``, ``GET /model``; OpenAPI docs at ``/docs``. Bad input never crashes the
server: every problem is a 4xx with a JSON body naming the field and what is wrong. With an
API key, every endpoint but ``/health`` needs the ``X-API-Key`` header. Logs hold counts,
never record contents or keys.
"""

from __future__ import annotations

import io
import json
import logging
import math
import secrets
import time
from typing import Any, Optional

import numpy as np
import pandas as pd
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse

import netad

API_VERSION = "1"
log = logging.getLogger("netad.serving")


class ApiError(Exception):
    def __init__(self, status: int, error: str, **details: Any) -> None:
        super().__init__(error)
        self.status, self.body = status, {"error": error, **details}


def _schema(predictor: Any) -> list[dict[str, Any]]:
    st = predictor.preprocessor.state
    out = []
    for col in st["input_columns"]:
        kind = st["kinds"][col]
        entry: dict[str, Any] = {"name": col, "kind": kind}
        if col in st["categorical"]["columns"]:
            entry["categories"] = st["categorical"]["categories"][st["categorical"]["columns"].index(col)]
        if col in st["dropped_constant"]:
            entry["note"] = "constant in training: read but not used"
        out.append(entry)
    return out


def _check_record(i: int, record: Any, schema: dict[str, dict[str, Any]], warnings: list) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ApiError(422, "each record must be a JSON object", record=i)
    missing = [c for c in schema if c not in record]
    if missing:
        raise ApiError(422, "missing field", record=i, field=missing[0], missing=missing)
    unknown = [k for k in record if k not in schema]
    if unknown:
        raise ApiError(422, "unknown field", record=i, field=unknown[0], unknown=unknown)
    for name, spec in schema.items():
        value = record[name]
        kind = spec["kind"]
        if kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ApiError(422, "wrong type: expected a number", record=i, field=name, got=type(value).__name__)
            if not math.isfinite(value):
                raise ApiError(422, "not a finite number", record=i, field=name)
        elif kind == "boolean":
            ok = isinstance(value, bool) or value in (0, 1) or (
                isinstance(value, str) and value.strip().lower() in ("true", "false", "t", "f", "yes", "no", "0", "1"))
            if not ok:
                raise ApiError(422, "wrong type: expected true or false", record=i, field=name)
        else:
            if value is None or isinstance(value, (dict, list)):
                raise ApiError(422, "wrong type: expected a string", record=i, field=name)
            cats = spec.get("categories")
            if cats is not None and str(value) not in cats:
                warnings.append({"record": i, "field": name, "value": str(value),
                                 "note": "unseen category: scored through the unknown bucket"})
    return record


def create_app(predictor: Any, *, model_name: str = "netad-model", api_key: Optional[str] = None,
               max_records: int = 10_000, max_body_bytes: int = 10 * 1024 * 1024) -> FastAPI:
    app = FastAPI(title="netad anomaly scoring", version=API_VERSION,
                  description="Scores network records with a trained netad model.")
    schema = {s["name"]: s for s in _schema(predictor)}
    threshold = float(predictor.threshold)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path not in ("/health",):
            given = request.headers.get("x-api-key", "")
            if not secrets.compare_digest(given.encode(), api_key.encode()):
                return JSONResponse(status_code=401, content={"error": "missing or wrong X-API-Key header"})
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(status_code=413, content={"error": "body too large", "limit_bytes": max_body_bytes})
        return await call_next(request)

    def _respond(frame: pd.DataFrame, warnings: list, started: float) -> dict[str, Any]:
        scores = predictor.score(frame)
        flagged = scores >= threshold
        log.info("scored %d records, %d flagged", len(scores), int(flagged.sum()))
        return {"model": model_name, "api_version": API_VERSION, "threshold": threshold,
                "predictions": [{"score": float(s), "is_anomaly": bool(f)} for s, f in zip(scores, flagged)],
                "warnings": warnings, "processing_time_ms": (time.perf_counter() - started) * 1000.0}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        cfg = predictor.config
        return {"model": model_name, "api_version": API_VERSION, "package_version": netad.__version__,
                "model_type": cfg.get("model_type", "classifier"), "threshold": threshold,
                "threshold_method": cfg.get("threshold_method"), "schema": list(schema.values()),
                "metrics": {"cross_validation": cfg.get("training", {}).get("cv_summary")},
                "label": cfg.get("label")}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        raw = await request.body()
        if len(raw) > max_body_bytes:
            raise ApiError(413, "body too large", limit_bytes=max_body_bytes)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "malformed JSON", detail=str(exc).splitlines()[0]) from None
        records = body if isinstance(body, list) else [body]
        if not records:
            raise ApiError(422, "no records: send one JSON object or a non-empty list")
        if len(records) > max_records:
            raise ApiError(413, "too many records", limit=max_records, got=len(records))
        warnings: list = []
        checked = [_check_record(i, r, schema, warnings) for i, r in enumerate(records)]
        return _respond(pd.DataFrame.from_records(checked, columns=list(schema)), warnings, started)

    @app.post("/predict/csv")
    async def predict_csv(file: UploadFile = File(...)) -> dict[str, Any]:
        started = time.perf_counter()
        data = await file.read()
        if len(data) > max_body_bytes:
            raise ApiError(413, "body too large", limit_bytes=max_body_bytes)
        try:
            frame = pd.read_csv(io.BytesIO(data), low_memory=False)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ApiError(400, "not a readable CSV file", detail=str(exc).splitlines()[0] if str(exc) else "") from None
        if frame.empty:
            raise ApiError(422, "no records in the CSV file")
        if len(frame) > max_records:
            raise ApiError(413, "too many records", limit=max_records, got=len(frame))
        missing = [c for c in schema if c not in frame.columns]
        if missing:
            raise ApiError(422, "missing field", field=missing[0], missing=missing)
        reasons = predictor.preprocessor.row_problems(frame[list(schema)])
        bad = np.flatnonzero(reasons != "")
        if bad.size:
            raise ApiError(422, "invalid values", record=int(bad[0]), reason=str(reasons[bad[0]]),
                           invalid_records=int(bad.size))
        warnings: list = []
        for spec in schema.values():
            cats = spec.get("categories")
            if cats is not None:
                unseen = ~frame[spec["name"]].astype(str).isin(cats)
                warnings += [{"record": int(i), "field": spec["name"], "value": str(frame[spec["name"]].iloc[i]),
                              "note": "unseen category: scored through the unknown bucket"}
                             for i in np.flatnonzero(unseen.to_numpy())]
        return _respond(frame, warnings, started)

    return app
