"""A local HTTP service for exported models, with TF Serving-compatible routes (FastAPI + uvicorn).

    python -m sentiment_tf.serve --model saved_models/lstm --port 8501
    python -m sentiment_tf.serve --model lstm=saved_models/lstm --model bert=saved_models/bert

    curl -s localhost:8501/predict -d '{"texts": ["这家酒店很干净", "太差了"]}'
    curl -s localhost:8501/v1/models/lstm:predict -d '{"instances": ["这家酒店很干净"]}'
    curl -s localhost:8501/v1/models/lstm          # version status, as TF Serving reports it
    curl -s localhost:8501/metrics                 # Prometheus: requests, latency, labels, confidence, OOV

Clients send **raw text** to every route: exports clean and tokenize in their graph (LSTM exports made
before jieba ran in the graph are segmented here, with the jieba settings recorded in the export).

Like TF Serving, each model directory is watched and served at its newest version that loads: a new
(or replaced) version is loaded in the background and swapped in once it answered a warm-up request;
requests already batched finish on the old version. A version that fails to load is reported in the
status route and retried when its files change; a version deleted from disk is never answered from.
Concurrent requests are batched: whatever arrived while the previous batch ran is predicted together
(no artificial wait unless --batch-timeout-ms is set), large requests in chunks taken in turn so they
never hold up small ones. One client's cost is bounded: body size, request read time, connections
(idle ones never lock others out), work in progress (see sentiment_tf.serving.limits); SIGTERM
finishes what fits in --shutdown-timeout and exits 0 (sentiment_tf.serving.lifecycle).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import parse_configs
from sentiment_tf.core.errors import entry_point, setup_logging
from sentiment_tf.serving.config import HttpConfig, ServeConfig

log = logging.getLogger("sentiment_tf.serve")


def main(argv: list[str] | None = None) -> int:
    (cfg, http), _ = parse_configs(build_parser(), argv, (ServeConfig, HttpConfig))
    setup_logging(cfg.verbose)
    api_key = http.resolved_api_key()
    from sentiment_tf.export.versions import resolve_version_dir
    from sentiment_tf.serving.lifecycle import bind

    models = cfg.model_dirs()
    for base in models.values():
        resolve_version_dir(base)  # a missing or foreign directory: one line now, before the port or any load
    sock = bind(http.host, http.port)  # a busy port fails now, not after the imports and models load
    import uvicorn

    from sentiment_tf.serving.app import ModelSlot, create_app
    from sentiment_tf.serving.lifecycle import Drain, DrainingServer, DrainMiddleware, connections_allowed
    from sentiment_tf.serving.limits import RequestLimits, protocol_with_timeout
    from sentiment_tf.serving.metrics import HttpMetrics, ServeMetrics

    slots = {}
    for name, base in models.items():
        t0 = time.perf_counter()
        slots[name] = slot = ModelSlot.open(name, base, cfg.segment_workers)
        log.info("model %s: version %d of %s (%s) loaded in %.1fs%s", name, slot.current.version, slot.base,
                 slot.current.predictor.metadata.get("family"), time.perf_counter() - t0,
                 "; pinned: newer versions are not served" if slot.pinned is not None else "")
    metrics, drain = ServeMetrics(), Drain(cfg.shutdown_timeout)
    app = HttpMetrics(DrainMiddleware(RequestLimits(create_app(cfg, slots, metrics), http.max_body_bytes,
                                                    http.timeout_request, api_key), drain), metrics)
    config = uvicorn.Config(app, log_level="debug" if cfg.verbose else "warning",
                            http=protocol_with_timeout(http.timeout_request, connections_allowed(http.limit_connections)),
                            timeout_keep_alive=http.timeout_keep_alive,
                            timeout_graceful_shutdown=cfg.shutdown_timeout + 1.0)  # a backstop: the drain answers first
    print(f"serving {', '.join(slots)} on http://{http.host}:{sock.getsockname()[1]}  (POST /predict, "
          f"POST /v1/models/<name>:predict, GET /v1/models/<name>, /healthz, /metrics)", flush=True)
    DrainingServer(config, drain).run(sockets=[sock])
    # Every answer is sent. Exiting normally would wait for an abandoned model call still running in a
    # thread, and then for TensorFlow's teardown (seconds): --shutdown-timeout is a promise.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("serve", __doc__, ServeConfig, HttpConfig)


cli = entry_point(main)


if __name__ == "__main__":
    cli()
