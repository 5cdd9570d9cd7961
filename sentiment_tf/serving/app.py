"""The HTTP app behind `python -m sentiment_tf.serve`: model slots that follow their directory's
versions, batched prediction, TF Serving-compatible routes, limits and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from fastapi import (  # module level: FastAPI resolves the route annotations here
    FastAPI,
    Request,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentiment_tf.core.config import option
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import has_words
from sentiment_tf.export.versions import metadata_path, resolve_version_dir, versions
from sentiment_tf.serving.limits import LimitExceeded
from sentiment_tf.serving.metrics import ServeMetrics
from sentiment_tf.serving.predictor import Predictor
from sentiment_tf.serving.segment_pool import segment_pool, segment_texts

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ServeConfig:
    """Models to serve and the service's limits."""

    model: list[str] = option("Model base directory (TF Serving layout, newest version served), optionally "
                              "NAME=DIR; repeat for several models. The name defaults to the directory's name.",
                              metavar="[NAME=]DIR", default_factory=list)
    host: str = option("Interface to listen on (0.0.0.0 for all).", default="127.0.0.1")
    port: int = option("Port.", at_least=0, at_most=65535, default=8501)
    max_texts: int = option("Most texts in one request (more → 413).", at_least=1, default=256)
    max_chars: int = option("Most characters in one text (longer → 413).", at_least=1, default=5000)
    max_batch: int = option("Most texts predicted together when batching concurrent requests (large batches "
                            "pay off: an LSTM call costs mostly per time step, not per text).", at_least=1, default=1024)
    batch_timeout_ms: float = option("Wait up to this long for more requests to fill a batch (0: batch only what "
                                     "is already waiting).", at_least=0, default=0.0)
    segment: bool = option("TF Serving routes take raw text, and LSTM exports made before jieba ran in the graph "
                           "segment it here; --no-segment "
                           "passes instances to the graph unchanged, exactly as TF Serving does (for clients "
                           "that segment, like sentiment_tf.client). /predict always takes raw text.", default=True)
    segment_workers: int = option("Processes that segment text for LSTM exports made before jieba ran in the graph "
                                  "(jieba is pure Python, so threads "
                                  "would share one core); 0 segments in a thread of the server process.", at_least=0, default=2)
    max_body_bytes: int = option("Largest request body; a bigger one is a 413, refused from its Content-Length "
                                 "before it is read.", at_least=1, default=8 * 1024 * 1024)
    timeout_request: float = option("Seconds a client has to send a request's headers (from connecting, or from "
                                    "the previous response), and then its body; the connection is closed or the "
                                    "request answered 408.", above=0, default=15.0)
    timeout_keep_alive: float = option("Seconds an idle keep-alive connection stays open (uvicorn's).", above=0,
                                       default=5.0)
    limit_concurrency: int = option("Most concurrent connections and requests; more get 503 (uvicorn's).",
                                    at_least=1, default=256)
    shutdown_timeout: float = option("On SIGTERM, wait at most this long for requests in flight (uvicorn's "
                                     "graceful shutdown).", at_least=0, default=10.0)
    api_key: str | None = option("Require this key on every route but /healthz (header 'Authorization: Bearer "
                                 "KEY' or 'X-API-Key: KEY'); default: the SENTIMENT_TF_API_KEY environment "
                                 "variable, else none. Use it when the port is reachable by others.", default=None)
    docs: bool = option("Serve the OpenAPI docs at /docs (Swagger UI loads its scripts from a CDN).", default=False)
    poll_seconds: float = option("How often to look for new version directories (0 disables hot reload).",
                                 at_least=0, default=2.0)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        if not self.model:
            raise UserError("--model: give at least one exported model directory (e.g. saved_models/lstm)")

    def resolved_api_key(self) -> str | None:
        return self.api_key or os.environ.get("SENTIMENT_TF_API_KEY") or None

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
    predictor = Predictor.load(version_dir)
    predictor.predict(["预热 warm-up"])
    return predictor


def make_pool(predictor: Any, workers: int) -> Any:
    """Segmentation processes for an LSTM predictor (None for BERT, or with ``workers=0``)."""
    if predictor.tokenizer is None or workers < 1:
        return None

    pool = segment_pool(predictor.tokenizer, workers)
    list(pool.map(len, [[]] * workers))  # start the workers (and load jieba's dictionary) now
    return pool


def pool_broken(pool: Any) -> bool:
    """A ProcessPoolExecutor one of whose workers died (it refuses all work from then on)."""
    return pool is not None and bool(getattr(pool, "_broken", False))


def version_identity(version_dir: Path) -> tuple[int, ...]:
    """What tells a version directory's contents apart when its number is reused (as TF Serving keys
    on the path and its files): inodes, size and modification times of the graph and metadata."""
    graph, meta = (version_dir / "saved_model.pb").stat(), metadata_path(version_dir).stat()
    return (version_dir.stat().st_ino, graph.st_ino, graph.st_size, graph.st_mtime_ns, meta.st_ino, meta.st_mtime_ns)


def public_message(err: BaseException) -> str:
    """An error's first line with every filesystem path cut to its last part (no server paths leak)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = re.sub(r"(?:[A-Za-z]:)?(?:/[^\s/:'\"(),]+)+/?", lambda m: Path(m.group()).name or m.group(), text)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@dataclasses.dataclass
class Loaded:
    """One loaded version: what answers requests, and the directory contents it came from."""

    version: int
    identity: tuple[int, ...]
    predictor: Any
    pool: Any = None  # segmentation processes for this predictor's tokenizer


@dataclasses.dataclass
class ModelSlot:
    """One served model: the version serving it (None once every version is gone) and the versions
    that failed to load (retried when their files change)."""

    name: str
    base: Path
    workers: int = 0
    current: Loaded | None = None
    failed: dict[int, tuple[tuple[int, ...], str]] = dataclasses.field(default_factory=dict)  # → (identity, error)
    queue: asyncio.Queue | None = None
    worker: asyncio.Task | None = None
    pool_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    refresh_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @classmethod
    def open(cls, name: str, base: Path, workers: int = 0) -> "ModelSlot":
        """The newest version of ``base`` that loads (broken newer ones are reported, not fatal)."""
        slot = cls(name, resolve_version_dir(base).parent, workers)  # refuses a directory that is not ours
        slot.refresh()
        if slot.current is None:
            errors = "; ".join(f"version {v}: {msg}" for v, (_, msg) in sorted(slot.failed.items(), reverse=True))
            raise UserError(f"--model {base}: no version loads ({errors})")
        return slot

    def candidates(self) -> list[tuple[int, tuple[int, ...]]]:
        """(version, identity) of every complete export version, newest first."""
        out = []
        for v in reversed(versions(self.base) if self.base.is_dir() else []):
            try:
                if metadata_path(self.base / str(v)).is_file():
                    out.append((v, version_identity(self.base / str(v))))
            except OSError:
                continue  # removed while we looked
        return out

    def refresh(self) -> None:
        """Serves the newest version that loads, as TF Serving does: a new or replaced version is loaded
        and swapped in; one that vanished is unloaded (falling back to the newest remaining one);
        a failed one is retried once its files change (runs in a worker thread)."""
        with self.refresh_lock:
            self._refresh()

    def _refresh(self) -> None:
        current = self.current
        for version, identity in self.candidates():
            if current is not None and (version, identity) == (current.version, current.identity):
                return  # the newest loadable version is the one serving
            if self.failed.get(version, (None,))[0] == identity:
                continue  # failed before, unchanged since
            try:
                predictor = load_predictor(self.base / str(version))
                loaded = Loaded(version, identity, predictor, make_pool(predictor, self.workers))
            except Exception as err:  # noqa: BLE001 - any failure keeps the old version serving
                self.failed[version] = (identity, public_message(err))
                log.error("model %s: version %d failed to load (%s)", self.name, version, self.failed[version][1])
                continue
            self.failed.pop(version, None)
            self.swap(loaded)
            return
        if current is not None:
            log.error("model %s: version %d is gone and no other version loads; unloaded", self.name,
                      current.version)
            self.swap(None)

    def swap(self, loaded: Loaded | None) -> None:
        # One assignment: a batch that already took the old version finishes with it.
        old, self.current = self.current, loaded
        if loaded is not None:
            log.info("model %s: now serving version %d", self.name, loaded.version)
        if old is not None and old.pool is not None:
            old.pool.shutdown(wait=True)  # after the swap: requests already segmenting finish first

    def heal_pool(self, loaded: Loaded) -> None:
        """Replaces ``loaded``'s segmentation pool if a worker died (the OOM killer, a crash); blocking."""
        with self.pool_lock:
            if pool_broken(loaded.pool):
                log.error("model %s: a segmentation worker died; starting new workers", self.name)
                old, loaded.pool = loaded.pool, make_pool(loaded.predictor, self.workers)
                old.shutdown(wait=False)

    def healthy(self) -> bool:
        return self.current is not None and not pool_broken(self.current.pool)

    async def submit(self, texts: list[str], segmenter: ThreadPoolExecutor, prepared: bool = False) -> "BatchResult":
        """Queues ``texts`` for the batch worker (segmented first unless ``prepared``) and awaits their result."""
        loop = asyncio.get_running_loop()
        current = self.current
        if current is None or not self.on_disk(current):
            # Deleted or replaced since it was loaded (or nothing loaded): never answer from it; load what is there now.
            await loop.run_in_executor(None, self.refresh)
        loaded = self.available()
        if prepared:
            pending = _Pending(texts, texts, None, loop.create_future())
        elif loaded.predictor.tokenizer is None:  # the graph takes raw text: nothing to do before the model
            pending = _Pending(texts, texts, loaded.predictor, loop.create_future())
        else:
            # Segment here, in its own thread, so jieba (Python, holds the GIL) for the next requests
            # overlaps the model call for the current batch (TensorFlow releases the GIL).
            inputs = await self.segment(loaded, texts, segmenter)
            pending = _Pending(texts, inputs, loaded.predictor, loop.create_future())
        assert self.queue is not None
        await self.queue.put(pending)
        return await pending.future

    def on_disk(self, loaded: Loaded) -> bool:
        """Whether ``loaded``'s directory still holds what was loaded (three stat calls: cheap per request)."""
        try:
            return version_identity(self.base / str(loaded.version)) == loaded.identity
        except OSError:
            return False

    def available(self) -> Loaded:
        loaded = self.current
        if loaded is None:
            raise ApiError(503, f"no version of model {self.name} is available (every version was removed or "
                                f"fails to load; see GET /v1/models/{self.name})")
        return loaded

    async def segment(self, loaded: Loaded, texts: list[str], segmenter: ThreadPoolExecutor) -> list[str]:
        loop = asyncio.get_running_loop()
        for _ in range(2):  # a dead worker breaks the pool: replace it once, then retry
            pool = loaded.pool
            if pool is None:
                return await loop.run_in_executor(segmenter, loaded.predictor.prepare, texts)
            try:
                return await asyncio.wrap_future(pool.submit(segment_texts, texts))
            except BrokenProcessPool:
                await loop.run_in_executor(None, self.heal_pool, loaded)
            except RuntimeError:  # "cannot schedule new futures after shutdown": the version was swapped
                loaded = self.available()
        raise ApiError(503, "segmentation workers keep failing; try again shortly")

    def status(self) -> dict[str, Any]:
        """TF Serving's GetModelStatus response."""
        entries = []
        if self.current is not None:
            entries.append({"version": str(self.current.version), "state": "AVAILABLE",
                            "status": {"error_code": "OK", "error_message": ""}})
        entries += [{"version": str(v), "state": "END", "status": {"error_code": "UNKNOWN", "error_message": err}}
                    for v, (_, err) in sorted(self.failed.items(), reverse=True)]
        return {"model_version_status": entries}

    def metadata(self) -> dict[str, Any]:
        loaded = self.available()
        meta = loaded.predictor.metadata
        signature = meta.get("signature", {})
        metrics = {k: v for k, v in meta.get("metrics", {}).items() if isinstance(v, (int, float))}  # no paths
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(loaded.version)},
                "metadata": {"signature_def": {"signature_def": {"serving_default": {
                    "inputs": {signature.get("input", "text"): {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]},
                                                                "description": "raw text (segmented by this service)"}},
                    "outputs": signature.get("outputs", {}), "method_name": "tensorflow/serving/predict"}}},
                    "sentiment_tf": {**{k: meta.get(k) for k in ("family", "labels", "label2id", "tokenizer",
                                                                 "max_tokens", "max_length", "input_format", "created")
                                        if k in meta}, "metrics": metrics}}}


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


def _run_batch(predictor: Any, items: list[_Pending]) -> tuple[Any, int, int]:
    """One model call (per 256 texts) for every waiting request: its predictions, and the number of
    model tokens and unknown tokens in it (for the OOV metric).

    Requests arrive already segmented (see :meth:`ModelSlot.submit`); one segmented by a
    version that has since been replaced is segmented again with the serving version's tokenizer.
    """
    inputs = []
    for it in items:
        ready = it.inputs is not None and (it.prepared_by is None or it.prepared_by is predictor)
        inputs.extend(it.inputs if ready else predictor.prepare(it.texts))
    result = predictor.predict(inputs, prepared=True)
    if result.token_counts is not None:  # counted in the graph: no Python tokenizer in this process
        return result, int(result.token_counts.sum()), int(result.unknown_counts.sum())
    tokens = predictor.tokens(inputs, prepared=True)
    return result, sum(len(t) for t in tokens.tokens), sum(tokens.oov)


async def _take_batch(queue: asyncio.Queue, cfg: ServeConfig) -> list[_Pending]:
    """The next request and whatever else is waiting (up to ``--max-batch`` texts, ``--batch-timeout-ms``)."""
    loop = asyncio.get_running_loop()
    items = [await queue.get()]
    n = len(items[0].texts)
    deadline = loop.time() + cfg.batch_timeout_ms / 1000
    while n < cfg.max_batch:
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except asyncio.TimeoutError:
                break
        items.append(item)
        n += len(item.texts)
    return items


def _answer(items: list[_Pending], version: int, batch: tuple[Any, int, int], slot: "ModelSlot",
            metrics: ServeMetrics) -> None:
    result, tokens, oov = batch
    metrics.batch(slot.name, len(result.labels))
    metrics.predicted(slot.name, version, result.labels, result.probabilities, tokens, oov)
    start = 0
    for it in items:
        end = start + len(it.texts)
        if not it.future.done():
            it.future.set_result(BatchResult(version, result.labels[start:end], result.label_ids[start:end],
                                             result.probabilities[start:end], result.label_names))
        start = end


def _still_predicts(predictor: Any) -> bool:
    """Whether the model answers a known-good text: tells a request's fault (400) from the server's (500)."""
    try:
        predictor.predict(["预热 warm-up"])
        return True
    except Exception:  # noqa: BLE001
        return False


async def _batch_worker(slot: ModelSlot, cfg: ServeConfig, executor: ThreadPoolExecutor,
                        metrics: ServeMetrics) -> None:
    loop = asyncio.get_running_loop()
    assert slot.queue is not None
    published: set[int] = set()
    while True:
        items = await _take_batch(slot.queue, cfg)
        loaded = slot.current
        if loaded is None:
            for it in items:
                if not it.future.done():
                    it.future.set_exception(ApiError(503, f"no version of model {slot.name} is available"))
            continue
        if loaded.version not in published:
            published.add(loaded.version)
            metrics.loaded(slot.name, loaded.version, loaded.predictor.metadata)
        try:
            _answer(items, loaded.version, await loop.run_in_executor(executor, _run_batch, loaded.predictor, items),
                    slot, metrics)
            continue
        except Exception as err:  # noqa: BLE001 - find the culprit below
            if len(items) == 1:
                failures = [(items[0], err)]
            else:
                failures = []
                # One request's texts must not fail the others batched with it: retry each alone.
                for it in items:
                    try:
                        _answer([it], loaded.version, await loop.run_in_executor(executor, _run_batch,
                                                                                 loaded.predictor, [it]), slot, metrics)
                    except Exception as one_err:  # noqa: BLE001 - reported to that request only
                        failures.append((it, one_err))
        server_fault = not await loop.run_in_executor(executor, _still_predicts, loaded.predictor)
        for it, one_err in failures:
            log.error("model %s: prediction failed: %s", slot.name, public_message(one_err))
            status = 500 if server_fault else 400
            if not it.future.done():
                it.future.set_exception(ApiError(status, f"these texts could not be predicted "
                                                         f"({public_message(one_err)})"))


# ---------------------------------------------------------------------------------------------
# Requests: parsing and validation (pure; every problem is an ApiError with a 4xx status)


def slot_for(slots: dict[str, ModelSlot], name: Any) -> ModelSlot:
    if name is not None and not isinstance(name, str):
        raise ApiError(400, f'"model" must be a string naming a served model: {sorted(slots)}')
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
    except RecursionError:
        raise ApiError(400, "malformed JSON request body: nested too deeply") from None


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
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:  # valid JSON ("\ud800") but no text: a lone UTF-16 surrogate
            raise ApiError(400, f"{what}[{i}] is not valid Unicode text (it holds a lone surrogate, "
                                "e.g. \\ud800)") from None
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
    @app.exception_handler(ApiError)
    @app.exception_handler(LimitExceeded)
    async def api_error(_: Request, err: ApiError | LimitExceeded) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)


def friendly_predictions(texts: list[str], out: BatchResult) -> list[dict[str, Any]]:
    """/predict's rows: a text with nothing to classify (empty, spaces, only emoji or punctuation) gets
    ``"label": null`` and a reason instead of a confident-looking guess."""
    rows = []
    for text, label, probs in zip(texts, out.labels, out.probabilities.tolist()):
        if has_words(text):
            rows.append({"text": text, "label": label, "probabilities": dict(zip(out.label_names, probs))})
        else:
            rows.append({"text": text, "label": None, "probabilities": None,
                         "reason": "no letters, digits or CJK characters to classify"})
    return rows


def add_status_routes(app: FastAPI, slots: dict[str, ModelSlot], metrics: ServeMetrics) -> None:
    """The read-only routes: health, Prometheus metrics, TF Serving's version status and metadata."""

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        healthy = all(s.healthy() for s in slots.values())
        return JSONResponse({"status": "ok" if healthy else "unavailable",
                             "models": {name: s.current.version if s.current else None for name, s in slots.items()}},
                            status_code=200 if healthy else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/models/{name}")
    async def model_status(name: str) -> dict[str, Any]:
        return slot_for(slots, name).status()

    @app.get("/v1/models/{name}/metadata")
    async def model_metadata(name: str) -> dict[str, Any]:
        return slot_for(slots, name).metadata()


def create_app(cfg: ServeConfig, slots: dict[str, ModelSlot], metrics: ServeMetrics | None = None) -> Any:
    metrics = metrics or ServeMetrics()

    executor = ThreadPoolExecutor(max_workers=max(2, len(slots)), thread_name_prefix="predict")
    segmenter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment")  # jieba: one GIL anyway

    async def maintain() -> None:
        """Replaces dead segmentation workers every second; looks for new or removed versions every
        ``--poll-seconds``."""
        loop = asyncio.get_running_loop()
        last_poll = loop.time()
        while True:
            await asyncio.sleep(1.0 if cfg.poll_seconds <= 0 else min(1.0, cfg.poll_seconds))
            for slot in slots.values():
                if slot.current is not None and pool_broken(slot.current.pool):
                    await loop.run_in_executor(None, slot.heal_pool, slot.current)
            if cfg.poll_seconds > 0 and loop.time() - last_poll >= cfg.poll_seconds:
                last_poll = loop.time()
                for slot in slots.values():
                    await loop.run_in_executor(None, slot.refresh)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for slot in slots.values():
            slot.queue = asyncio.Queue()
            slot.worker = asyncio.create_task(_batch_worker(slot, cfg, executor, metrics))
        maintainer = asyncio.create_task(maintain())
        yield
        for task in [maintainer, *(s.worker for s in slots.values())]:
            if task:
                task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        segmenter.shutdown(wait=False, cancel_futures=True)
        for slot in slots.values():
            if slot.current is not None and slot.current.pool is not None:
                slot.current.pool.shutdown(wait=True, cancel_futures=True)  # idle by now; wait so workers exit

    # Swagger UI loads its assets from a CDN: off unless asked for.
    app = FastAPI(title="sentiment_tf", lifespan=lifespan, docs_url="/docs" if cfg.docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if cfg.docs else None)

    add_error_handlers(app)
    add_status_routes(app, slots, metrics)

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
                             "predictions": friendly_predictions(texts, out)})

    return app


