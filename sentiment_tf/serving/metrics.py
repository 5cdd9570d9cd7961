"""Prometheus metrics of the local service (``GET /metrics``), with ``prometheus_client``.

HTTP: requests and errors by route and status, latency. Models, per name and version: texts, batch
sizes, predicted labels, confidence, tokens and unknown tokens (their rate is the live OOV rate) and
the training-time reference OOV rate and label shares from the export's profile, so a Grafana panel
can put the two side by side::

    sum by (model) (rate(sentiment_tf_oov_tokens_total[5m])) / sum by (model) (rate(sentiment_tf_tokens_total[5m]))
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from sentiment_tf.serving.limits import ClientDisconnected

# Route templates, not raw paths: one label value per route whatever clients send.
_ROUTES = [(re.compile(r"^/v1/models/[^/]+:predict$"), "/v1/models/{name}:predict"),
           (re.compile(r"^/v1/models/[^/]+/metadata$"), "/v1/models/{name}/metadata"),
           (re.compile(r"^/v1/models/[^/:]+$"), "/v1/models/{name}")]
_PLAIN = {"/predict", "/healthz", "/metrics", "/docs", "/openapi.json"}
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def route_of(path: str) -> str:
    if path in _PLAIN:
        return path
    return next((name for pattern, name in _ROUTES if pattern.match(path)), "other")


class ServeMetrics:
    """The service's metrics in their own registry (two apps in one process never share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("sentiment_tf_http_requests", "HTTP requests by route and status.",
                                ["route", "status"], registry=r)
        self.errors = Counter("sentiment_tf_http_errors", "HTTP responses with status >= 400, by route and status.",
                              ["route", "status"], registry=r)
        self.latency = Histogram("sentiment_tf_http_request_seconds", "Time from request to the response's end.",
                                 ["route"], registry=r)
        self.batch_texts = Histogram("sentiment_tf_batch_texts", "Texts per batched model call.", ["model"],
                                     buckets=BATCH_BUCKETS, registry=r)
        self.texts = Counter("sentiment_tf_texts", "Texts predicted.", ["model", "version"], registry=r)
        self.labels = Counter("sentiment_tf_predicted_labels", "Predicted labels.", ["model", "version", "label"],
                              registry=r)
        self.confidence = Histogram("sentiment_tf_confidence", "Top (calibrated) probability per text.",
                                    ["model", "version"], buckets=CONFIDENCE_BUCKETS, registry=r)
        self.tokens = Counter("sentiment_tf_tokens", "Model tokens (jieba tokens or word pieces) in predicted texts.",
                              ["model", "version"], registry=r)
        self.oov_tokens = Counter("sentiment_tf_oov_tokens", "Tokens the model does not know (read as [UNK]).",
                                  ["model", "version"], registry=r)
        self.reference_oov = Gauge("sentiment_tf_reference_oov_rate", "OOV rate of the export's test split at "
                                   "training time.", ["model", "version"], registry=r)
        self.reference_labels = Gauge("sentiment_tf_reference_label_share", "Share of each predicted label on the "
                                      "export's test split at training time.", ["model", "version", "label"], registry=r)

    def loaded(self, model: str, version: int, metadata: dict[str, Any]) -> None:
        """Publishes a newly served version's reference statistics."""
        profile = metadata.get("profile") or {}
        if isinstance(profile.get("oov_rate"), (int, float)):
            self.reference_oov.labels(model, str(version)).set(float(profile["oov_rate"]))
        for label, share in (profile.get("labels") or {}).items():
            if isinstance(share, (int, float)):
                self.reference_labels.labels(model, str(version), label).set(float(share))

    def batch(self, model: str, texts: int) -> None:
        self.batch_texts.labels(model).observe(texts)

    def predicted(self, model: str, version: int, labels: list[str], probabilities: Any, tokens: int,
                  oov: int) -> None:
        v = str(version)
        self.texts.labels(model, v).inc(len(labels))
        for label, count in zip(*np.unique(np.asarray(labels, dtype=object), return_counts=True)):
            self.labels.labels(model, v, str(label)).inc(int(count))
        histogram = self.confidence.labels(model, v)
        for p in np.asarray(probabilities, dtype=np.float64).max(axis=1) if len(labels) else []:
            histogram.observe(float(p))
        self.tokens.labels(model, v).inc(tokens)
        self.oov_tokens.labels(model, v).inc(oov)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class HttpMetrics:
    """ASGI middleware (outermost, so the limits' own 401/408/413 answers are counted too): every
    request's route, status and duration."""

    def __init__(self, app: Any, metrics: ServeMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500  # a handler that raised without answering is a 500

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except ClientDisconnected:
            status = 499  # the client hung up mid-body: its doing, not an error of ours (nginx's code)
        finally:
            route = route_of(scope.get("path", ""))
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
