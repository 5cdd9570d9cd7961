"""A local HTTP service for exported models, with TF Serving-compatible routes (FastAPI + uvicorn).

    python -m sentiment_tf.serve --model saved_models/lstm --port 8501
    python -m sentiment_tf.serve --model lstm=saved_models/lstm --model bert=saved_models/bert

    curl -s localhost:8501/predict -d '{"texts": ["这家酒店很干净", "太差了"]}'
    curl -s localhost:8501/v1/models/lstm:predict -d '{"instances": ["这家酒店很干净"]}'
    curl -s localhost:8501/v1/models/lstm          # version status, as TF Serving reports it

Clients send **raw text** to every route: LSTM models are segmented here with the jieba settings
recorded in the export (TF Serving itself would need pre-segmented text, see `sentiment_tf.client`);
BERT exports clean and tokenize in their graph.

Like TF Serving, each model directory is watched: a newer version directory is loaded in the
background and swapped in once it answered a warm-up request; requests already batched finish on
the old version. A version that fails to load is reported in the status route and the old one keeps
serving. Concurrent requests are batched: whatever arrived while the previous batch ran is
predicted together (no artificial wait unless --batch-timeout-ms is set).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request  # module level: FastAPI resolves the route annotations here
from fastapi.responses import JSONResponse

from sentiment_tf import config as config_lib
from sentiment_tf.config import _help, parse_configs
from sentiment_tf.errors import UserError, run_cli, setup_logging

log = logging.getLogger("sentiment_tf.serve")


@dataclasses.dataclass
class ServeConfig:
    """Models to serve and the service's limits."""

    model: list[str] = _help("Model base directory (TF Serving layout, newest version served), optionally "
                             "NAME=DIR; repeat for several models. The name defaults to the directory's name.",
                             metavar="[NAME=]DIR", default_factory=list)
    host: str = _help("Interface to listen on (0.0.0.0 for all).", default="127.0.0.1")
    port: int = _help("Port.", at_least=0, at_most=65535, default=8501)
    max_texts: int = _help("Most texts in one request (more → 413).", at_least=1, default=256)
    max_chars: int = _help("Most characters in one text (longer → 413).", at_least=1, default=5000)
    max_batch: int = _help("Most texts predicted together when batching concurrent requests. Large batches "
                           "pay off: an LSTM call costs mostly per time step, not per text (measured on 2 "
                           "cores: 64 random texts 1.6k texts/s, 1024 texts 5.7k texts/s).", at_least=1, default=1024)
    batch_timeout_ms: float = _help("Wait up to this long for more requests to fill a batch (0: batch only what "
                                    "is already waiting).", at_least=0, default=0.0)
    segment: bool = _help("TF Serving routes take raw text and LSTM models segment it here; --no-segment "
                          "passes instances to the graph unchanged, exactly as TF Serving does (for clients "
                          "that segment, like sentiment_tf.client). /predict always takes raw text.", default=True)
    segment_workers: int = _help("Processes that segment text for LSTM models (jieba is pure Python, so threads "
                                 "would share one core); 0 segments in a thread of the server process.", at_least=0, default=2)
    poll_seconds: float = _help("How often to look for new version directories (0 disables hot reload).",
                                at_least=0, default=2.0)
    verbose: bool = _help("Debug logging.", default=False)

    def __post_init__(self) -> None:
        if not self.model:
            raise UserError("--model: give at least one exported model directory (e.g. saved_models/lstm)")

    def model_dirs(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for spec in self.model:
            name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
            path_obj = Path(path)
            name = name or path_obj.resolve().name
            if name in out:
                raise UserError(f"--model: two models are named {name!r}; name them with NAME=DIR")
            out[name] = path_obj
        return out


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status (TF Serving's error shape)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------------------
# Models, versions and hot reload


def load_predictor(version_dir: Path) -> Any:
    """A Predictor for ``version_dir``, warmed up (its first call traces the graph)."""
    from sentiment_tf.predict import Predictor

    predictor = Predictor.load(version_dir)
    predictor.predict(["预热 warm-up"])
    return predictor


def make_pool(predictor: Any, workers: int) -> Any:
    """Segmentation processes for an LSTM predictor (None for BERT, or with ``workers=0``)."""
    if predictor.tokenizer is None or workers < 1:
        return None
    from sentiment_tf.text import segment_pool

    pool = segment_pool(predictor.tokenizer, workers)
    list(pool.map(len, [[]] * workers))  # start the workers (and load jieba's dictionary) now
    return pool


@dataclasses.dataclass
class ModelSlot:
    """One served model: its current version and what happened to newer ones."""

    name: str
    base: Path
    version: int
    predictor: Any
    failed: dict[int, str] = dataclasses.field(default_factory=dict)  # version → error message
    pool: Any = None  # segmentation processes for the current predictor's tokenizer
    queue: asyncio.Queue | None = None
    worker: asyncio.Task | None = None

    workers: int = 0

    @classmethod
    def open(cls, name: str, base: Path, workers: int = 0) -> "ModelSlot":
        from sentiment_tf.export import resolve_version_dir

        version_dir = resolve_version_dir(base)
        predictor = load_predictor(version_dir)
        return cls(name, version_dir.parent, int(version_dir.name), predictor, pool=make_pool(predictor, workers),
                   workers=workers)

    async def submit(self, texts: list[str], segmenter: ThreadPoolExecutor, prepared: bool = False) -> "BatchResult":
        """Queues ``texts`` for the batch worker (segmented first unless ``prepared``) and awaits their result."""
        loop = asyncio.get_running_loop()
        if prepared:
            pending = _Pending(texts, texts, None, loop.create_future())
        else:
            # Segment here, in its own thread, so jieba (Python, holds the GIL) for the next requests
            # overlaps the model call for the current batch (TensorFlow releases the GIL).
            predictor, pool = self.predictor, self.pool
            if pool is not None:
                from sentiment_tf.text import segment_texts

                inputs = await asyncio.wrap_future(pool.submit(segment_texts, texts))
            else:
                inputs = await loop.run_in_executor(segmenter, predictor.prepare, texts)
            pending = _Pending(texts, inputs, predictor, loop.create_future())
        assert self.queue is not None
        await self.queue.put(pending)
        return await pending.future

    def status(self) -> dict[str, Any]:
        """TF Serving's GetModelStatus response."""
        entries = [{"version": str(self.version), "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""}}]
        entries += [{"version": str(v), "state": "END", "status": {"error_code": "UNKNOWN", "error_message": err}}
                    for v, err in sorted(self.failed.items(), reverse=True)]
        return {"model_version_status": entries}

    def metadata(self) -> dict[str, Any]:
        meta = self.predictor.metadata
        signature = meta.get("signature", {})
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": {"serving_default": {
                    "inputs": {signature.get("input", "text"): {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]},
                                                                "description": "raw text (segmented by this service)"}},
                    "outputs": signature.get("outputs", {}), "method_name": "tensorflow/serving/predict"}}},
                    "sentiment_tf": {k: meta.get(k) for k in ("family", "labels", "label2id", "tokenizer",
                                                              "max_tokens", "max_length", "input_format", "metrics")
                                     if k in meta}}}

    def reload_if_newer(self) -> None:
        """Loads the newest version if it is newer than the one served (runs in a worker thread)."""
        from sentiment_tf.export import versions as version_numbers

        versions = [v for v in version_numbers(self.base) if v > self.version and v not in self.failed]
        if not versions:
            return
        newest = versions[-1]
        try:
            predictor = load_predictor(self.base / str(newest))
        except Exception as err:  # noqa: BLE001 - any failure keeps the old version serving
            message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            self.failed[newest] = message
            log.error("model %s: version %d failed to load, still serving version %d (%s)", self.name, newest,
                      self.version, message)
            return
        # One assignment each: a batch that already took the old predictor finishes with it.
        old_pool = self.pool
        self.pool = make_pool(predictor, self.workers)
        self.predictor, self.version = predictor, newest
        if old_pool is not None:
            old_pool.shutdown(wait=True)  # after the swap: requests already segmenting finish first
        log.info("model %s: now serving version %d", self.name, newest)


# ---------------------------------------------------------------------------------------------
# Batching


@dataclasses.dataclass
class BatchResult:
    """One request's share of a batched model call."""

    version: int
    labels: list[str]
    label_ids: Any  # int64 [n]
    probabilities: Any  # float32 [n, labels]
    label_names: list[str]


@dataclasses.dataclass
class _Pending:
    texts: list[str]  # as received
    inputs: list[str] | None  # in the signature's input format (e.g. segmented), or None
    prepared_by: Any  # the predictor whose tokenizer made ``inputs`` (None: the client did)
    future: asyncio.Future


def _run_batch(predictor: Any, items: list[_Pending]) -> Any:
    """One model call (per 256 texts) for every waiting request.

    Requests arrive already segmented (see :meth:`ModelSlot.submit`); one segmented by a
    version that has since been replaced is segmented again with the serving version's tokenizer.
    """
    inputs = []
    for it in items:
        ready = it.inputs is not None and (it.prepared_by is None or it.prepared_by is predictor)
        inputs.extend(it.inputs if ready else predictor.prepare(it.texts))
    return predictor.predict(inputs, prepared=True)


async def _batch_worker(slot: ModelSlot, cfg: ServeConfig, executor: ThreadPoolExecutor) -> None:
    loop = asyncio.get_running_loop()
    assert slot.queue is not None
    while True:
        items = [await slot.queue.get()]
        n = len(items[0].texts)
        deadline = loop.time() + cfg.batch_timeout_ms / 1000
        while n < cfg.max_batch:
            try:
                item = slot.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(slot.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            items.append(item)
            n += len(item.texts)
        predictor, version = slot.predictor, slot.version
        try:
            result = await loop.run_in_executor(executor, _run_batch, predictor, items)
        except Exception as err:  # noqa: BLE001 - reported to each waiting request
            for it in items:
                if not it.future.done():
                    it.future.set_exception(err)
            continue
        start = 0
        for it in items:
            end = start + len(it.texts)
            if not it.future.done():
                it.future.set_result(BatchResult(version, result.labels[start:end], result.label_ids[start:end],
                                                 result.probabilities[start:end], result.label_names))
            start = end


# ---------------------------------------------------------------------------------------------
# Requests: parsing and validation (pure; every problem is an ApiError with a 4xx status)


def slot_for(slots: dict[str, ModelSlot], name: str | None) -> ModelSlot:
    if name is None:
        if len(slots) == 1:
            return next(iter(slots.values()))
        raise ApiError(400, f"several models are served; name one with \"model\": {sorted(slots)}")
    if name not in slots:
        raise ApiError(404, f"Servable not found for request: Latest({name}); served models: {sorted(slots)}")
    return slots[name]


def json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"malformed JSON request body: {err}") from None


def check_texts(texts: Any, what: str, cfg: ServeConfig) -> list[str]:
    """A non-empty list of strings within ``--max-texts`` and ``--max-chars``; TF Serving's
    ``{"text": "..."}`` rows are unwrapped."""
    if not isinstance(texts, list) or not texts:
        raise ApiError(400, f"{what} must be a non-empty list of strings")
    out = []
    for i, t in enumerate(texts):
        if isinstance(t, dict) and len(t) == 1:  # TF Serving row format: {"text": "..."}
            t = next(iter(t.values()))
        if not isinstance(t, str):
            raise ApiError(400, f"{what}[{i}] must be a string, got {type(t).__name__}")
        out.append(t)
    if len(out) > cfg.max_texts:
        raise ApiError(413, f"{len(out)} texts in one request; the limit is {cfg.max_texts} (--max-texts)")
    long = next((i for i, t in enumerate(out) if len(t) > cfg.max_chars), None)
    if long is not None:
        raise ApiError(413, f"{what}[{long}] has {len(out[long])} characters; the limit is {cfg.max_chars} "
                            "(--max-chars)")
    return out


def parse_tf_serving_body(body: Any, cfg: ServeConfig) -> tuple[list[str], bool]:
    """The texts of a TF Serving REST predict request, and whether it used the columnar format."""
    if not isinstance(body, dict):
        raise ApiError(400, 'the request body must be a JSON object with "instances" or "inputs"')
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise ApiError(400, f"signature {signature!r} is not served here; use serving_default (raw text)")
    if ("instances" in body) == ("inputs" in body):
        raise ApiError(400, 'give exactly one of "instances" (row format) or "inputs" (columnar format)')
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and len(inputs) == 1:  # {"inputs": {"text": [...]}}
            inputs = next(iter(inputs.values()))
        return check_texts(inputs, "inputs", cfg), True
    return check_texts(body["instances"], "instances", cfg), False


def parse_friendly_body(body: Any) -> tuple[Any, Any]:
    """``{"texts": [...], "model": name}`` → (model name or None, texts still to check)."""
    if not isinstance(body, dict) or "texts" not in body:
        raise ApiError(400, 'send {"texts": ["...", ...]} (and "model" when several are served)')
    return body.get("model"), body["texts"]


# ---------------------------------------------------------------------------------------------
# The application


def add_error_handlers(app: FastAPI) -> None:
    """Every error answers ``{"error": message}``; a request FastAPI cannot parse is a 400, not its 422."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)


def create_app(cfg: ServeConfig, slots: dict[str, ModelSlot]) -> Any:

    executor = ThreadPoolExecutor(max_workers=max(2, len(slots)), thread_name_prefix="predict")
    segmenter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment")  # jieba: one GIL anyway

    async def poll_versions() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(cfg.poll_seconds)
            for slot in slots.values():
                await loop.run_in_executor(None, slot.reload_if_newer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for slot in slots.values():
            slot.queue = asyncio.Queue()
            slot.worker = asyncio.create_task(_batch_worker(slot, cfg, executor))
        poller = asyncio.create_task(poll_versions()) if cfg.poll_seconds > 0 else None
        yield
        for task in [poller, *(s.worker for s in slots.values())]:
            if task:
                task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        segmenter.shutdown(wait=False, cancel_futures=True)
        for slot in slots.values():
            if slot.pool is not None:
                slot.pool.shutdown(wait=True, cancel_futures=True)  # idle by now; wait so workers exit

    app = FastAPI(title="sentiment_tf", lifespan=lifespan, docs_url="/docs", redoc_url=None)

    add_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": {name: s.version for name, s in slots.items()}}

    @app.get("/v1/models/{name}")
    async def model_status(name: str) -> dict[str, Any]:
        return slot_for(slots, name).status()

    @app.get("/v1/models/{name}/metadata")
    async def model_metadata(name: str) -> dict[str, Any]:
        return slot_for(slots, name).metadata()

    @app.post("/v1/models/{name}:predict")
    async def tf_serving_predict(name: str, request: Request) -> JSONResponse:
        slot = slot_for(slots, name)
        texts, columnar = parse_tf_serving_body(json_body(await request.body()), cfg)
        out = await slot.submit(texts, segmenter, prepared=not cfg.segment)
        probs, ids = out.probabilities.tolist(), out.label_ids.tolist()
        # JSONResponse directly: FastAPI's default encoder walks every number in Python first.
        if columnar:
            return JSONResponse({"outputs": {"probabilities": probs, "label_id": ids, "label": out.labels}})
        return JSONResponse({"predictions": [{"probabilities": p, "label_id": i, "label": lab}
                                             for p, i, lab in zip(probs, ids, out.labels)]})

    @app.post("/predict")
    async def friendly_predict(request: Request) -> JSONResponse:
        name, raw_texts = parse_friendly_body(json_body(await request.body()))
        slot = slot_for(slots, name)
        texts = check_texts(raw_texts, "texts", cfg)
        out = await slot.submit(texts, segmenter)
        return JSONResponse({"model": slot.name, "version": out.version,
                             "predictions": [{"text": t, "label": lab, "probabilities": dict(zip(out.label_names, row))}
                                             for t, lab, row in zip(texts, out.labels, out.probabilities.tolist())]})

    return app


def main(argv: list[str] | None = None) -> int:
    (cfg,), _ = parse_configs(build_parser(), argv, (ServeConfig,))
    setup_logging(cfg.verbose)
    import uvicorn

    slots = {}
    for name, base in cfg.model_dirs().items():
        t0 = time.perf_counter()
        slots[name] = ModelSlot.open(name, base, cfg.segment_workers)
        log.info("model %s: version %d of %s (%s) loaded in %.1fs", name, slots[name].version, slots[name].base,
                 slots[name].predictor.metadata.get("family"), time.perf_counter() - t0)
    app = create_app(cfg, slots)
    print(f"serving {', '.join(slots)} on http://{cfg.host}:{cfg.port}  (POST /predict, "
          f"POST /v1/models/<name>:predict, GET /v1/models/<name>, /healthz)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="debug" if cfg.verbose else "warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("serve", __doc__, ServeConfig)


def cli() -> None:
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
