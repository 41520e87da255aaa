"""What the API serves at ``GET /metrics`` (Prometheus text format, ``prometheus_client``).

Counters since start: requests and errors by endpoint and status, a latency histogram, records scored and
flagged, values of text columns never seen in training. Over the last ``window`` scored records (a ring buffer
of each record's bin per column, never the records themselves): the flagged rate, the unknown-category rate,
and each column's population stability index against the model's training-data summary (the bins of
``netad drift``: numeric bin edges are carried into the model's scaled features once, at start).
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from netad.data.summary import psi

ENDPOINTS = ("/predict", "/predict/csv", "/model", "/health", "/", "/metrics")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Column:
    """How one column's encoded values fall into its training bins."""

    def __init__(self, name: str, kind: str, expected: np.ndarray, index: int, edges: Optional[np.ndarray] = None,
                 code_bins: Optional[np.ndarray] = None) -> None:
        self.name, self.kind, self.expected, self.index = name, kind, expected, index
        self.edges, self.code_bins = edges, code_bins

    def bins(self, enc: Any) -> np.ndarray:
        if self.kind == "numeric":
            return np.searchsorted(self.edges, enc.dense[:, self.index], side="right")
        if self.kind == "boolean":
            return (enc.dense[:, self.index] >= 0.5).astype(np.int64)
        return self.code_bins[enc.codes[self.index]]


def _columns(predictor: Any) -> list[_Column]:
    """The drift bins of each column the model reads, in its encoded features' terms (empty without a summary)."""
    summary = (predictor.config.get("data_summary") or {}).get("columns")
    if not summary:
        return []
    pre = predictor.preprocessor
    st = pre.state
    numeric, booleans, cats = st["numeric"]["columns"], st["boolean"]["columns"], st["categorical"]["columns"]
    out = []
    if numeric:  # each column's raw edges through the preprocessing's own scaling (monotone: the bins keep)
        widths = [len(summary[c]["edges"]) for c in numeric]
        rows = max(1, max(widths))
        raw = np.zeros((rows, len(numeric)))
        for j, c in enumerate(numeric):
            edges = summary[c]["edges"] or [0.0]
            raw[:, j] = edges + [edges[-1]] * (rows - len(edges))
        scaled = pre.encode_arrays(raw, [np.zeros(rows) for _ in booleans],
                                   [np.zeros(rows, dtype=np.int64) for _ in cats]).dense
        for j, c in enumerate(numeric):
            col = summary[c]
            out.append(_Column(c, "numeric", np.asarray(col["bins"] + [col["missing"]], dtype=np.float64), j,
                               edges=np.asarray(scaled[:widths[j], j], dtype=np.float64)))
    for j, c in enumerate(booleans):
        counts = summary[c]["counts"]
        out.append(_Column(c, "boolean", np.array([counts.get("False", 0), counts.get("True", 0)], dtype=np.float64),
                           len(numeric) + j))
    for i, c in enumerate(cats):
        counts = summary[c]["counts"]
        known = st["categorical"]["categories"][i]
        # code -> bin: each training category its own, the unknown bucket "(other)"
        out.append(_Column(c, "categorical", np.array([counts.get(k, 0) for k in known] + [counts.get("(other)", 0)],
                                                      dtype=np.float64), i,
                           code_bins=np.arange(len(known) + 1, dtype=np.int64)))
    return out


class ApiMetrics:
    """The registry ``GET /metrics`` renders, and what the endpoints record into it."""

    def __init__(self, predictor: Any, window: int = 10_000) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("netad_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=self.registry)
        self.errors = Counter("netad_request_errors", "requests answered with 4xx or 5xx, by endpoint", ["endpoint"],
                              registry=self.registry)
        self.latency = Histogram("netad_request_latency_seconds", "time to answer, by endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.scored = Counter("netad_records_scored", "records scored", registry=self.registry)
        self.flagged = Counter("netad_records_flagged", "records flagged as anomalies", registry=self.registry)
        self.unknown = Counter("netad_unknown_category_values", "text values never seen in training, scored "
                               "through the unknown bucket", registry=self.registry)
        self.window = max(0, int(window))
        self.columns = _columns(predictor) if self.window else []
        self._bins = np.zeros((self.window, len(self.columns)), dtype=np.int32)
        self._flags = np.zeros(self.window, dtype=bool)
        self._unknown = np.zeros(self.window, dtype=bool)
        self._seen = 0  # records written into the ring so far
        self._lock = threading.Lock()
        self._unknown_codes = [len(c) for c in predictor.preprocessor.state["categorical"]["categories"]]
        self.registry.register(_WindowCollector(self))

    def request(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "other"
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint).inc()
        self.latency.labels(endpoint).observe(seconds)

    def records(self, enc: Any, flagged: np.ndarray) -> None:
        n = len(flagged)
        unseen = [codes == bucket for codes, bucket in zip(enc.codes, self._unknown_codes)]
        unknown = np.logical_or.reduce(unseen) if unseen else np.zeros(n, dtype=bool)
        self.scored.inc(n)
        self.flagged.inc(int(flagged.sum()))
        self.unknown.inc(int(sum(int(u.sum()) for u in unseen)))
        if not self.window:
            return
        keep = slice(max(0, n - self.window), n)  # a batch larger than the window: its last records
        bins = np.stack([c.bins(enc)[keep] for c in self.columns], axis=1) if self.columns else None
        with self._lock:
            at = (self._seen + np.arange(keep.stop - keep.start)) % self.window
            if bins is not None:
                self._bins[at] = bins
            self._flags[at] = flagged[keep]
            self._unknown[at] = unknown[keep]
            self._seen += keep.stop - keep.start

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            filled = min(self._seen, self.window)
            return filled, self._bins[:filled].copy(), self._flags[:filled].copy(), self._unknown[:filled].copy()


class _WindowCollector:
    """The gauges over the last ``window`` records, computed when Prometheus scrapes."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.metrics
        filled, bins, flags, unknown = m.snapshot()
        yield GaugeMetricFamily("netad_window_records", "records in the rolling window", value=filled)
        if not filled:
            return
        yield GaugeMetricFamily("netad_window_flagged_rate", "share of the window's records flagged",
                                value=float(flags.mean()))
        yield GaugeMetricFamily("netad_window_unknown_category_rate", "share of the window's records with a text "
                                "value never seen in training", value=float(unknown.mean()))
        family = GaugeMetricFamily("netad_column_psi", "population stability index of the window's records against "
                                "the training rows", labels=["column"])
        for j, col in enumerate(m.columns):
            actual = np.bincount(bins[:, j], minlength=len(col.expected)).astype(np.float64)
            family.add_metric([col.name], psi(col.expected, actual))
        yield family
