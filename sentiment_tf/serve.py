"""A local HTTP service for exported models, with TF Serving-compatible routes (FastAPI + uvicorn).

    python -m sentiment_tf.serve --model saved_models/lstm --port 8501
    python -m sentiment_tf.serve --model lstm=saved_models/lstm --model bert=saved_models/bert

    curl -s localhost:8501/predict -d '{"texts": ["这家酒店很干净", "太差了"]}'
    curl -s localhost:8501/v1/models/lstm:predict -d '{"instances": ["这家酒店很干净"]}'
    curl -s localhost:8501/v1/models/lstm          # version status, as TF Serving reports it
    curl -s localhost:8501/metrics                 # Prometheus: requests, latency, labels, confidence, OOV

Clients send **raw text** to every route: LSTM models are segmented here with the jieba settings
recorded in the export (TF Serving itself would need pre-segmented text, see `sentiment_tf.client`);
BERT exports clean and tokenize in their graph.

Like TF Serving, each model directory is watched and served at its newest version that loads: a new
(or replaced) version is loaded in the background and swapped in once it answered a warm-up request;
requests already batched finish on the old version. A version that fails to load is reported in the
status route and retried when its files change; a version deleted from disk is never answered from.
Concurrent requests are batched: whatever arrived while the previous batch ran is predicted together
(no artificial wait unless --batch-timeout-ms is set). One client's cost is bounded: body size,
request read time, connections (see sentiment_tf.serving.limits).
"""

from __future__ import annotations

import argparse
import logging
import time

from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import parse_configs
from sentiment_tf.core.errors import entry_point, setup_logging
from sentiment_tf.serving.app import ModelSlot, ServeConfig, create_app
from sentiment_tf.serving.limits import RequestLimits, protocol_with_timeout
from sentiment_tf.serving.metrics import HttpMetrics, ServeMetrics

log = logging.getLogger("sentiment_tf.serve")


def main(argv: list[str] | None = None) -> int:
    (cfg,), _ = parse_configs(build_parser(), argv, (ServeConfig,))
    setup_logging(cfg.verbose)
    import uvicorn

    slots = {}
    for name, base in cfg.model_dirs().items():
        t0 = time.perf_counter()
        slots[name] = slot = ModelSlot.open(name, base, cfg.segment_workers)
        log.info("model %s: version %d of %s (%s) loaded in %.1fs", name, slot.current.version, slot.base,
                 slot.current.predictor.metadata.get("family"), time.perf_counter() - t0)
    metrics = ServeMetrics()
    app = HttpMetrics(RequestLimits(create_app(cfg, slots, metrics), cfg.max_body_bytes, cfg.timeout_request,
                                    cfg.resolved_api_key()), metrics)
    print(f"serving {', '.join(slots)} on http://{cfg.host}:{cfg.port}  (POST /predict, "
          f"POST /v1/models/<name>:predict, GET /v1/models/<name>, /healthz, /metrics)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="debug" if cfg.verbose else "warning",
                http=protocol_with_timeout(cfg.timeout_request), limit_concurrency=cfg.limit_concurrency,
                timeout_keep_alive=cfg.timeout_keep_alive, timeout_graceful_shutdown=cfg.shutdown_timeout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("serve", __doc__, ServeConfig)


cli = entry_point(main)


if __name__ == "__main__":
    cli()
