"""The HTTP app behind `python -m sentiment_tf.serve`: model slots that follow their directory's
versions, batched prediction, TF Serving-compatible routes, limits and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

import numpy as np
from fastapi import (  # module level: FastAPI resolves the route annotations here
    FastAPI,
    Request,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import NOTHING_TO_CLASSIFY, has_words
from sentiment_tf.export.versions import metadata_path, resolve_version_dir, versions
from sentiment_tf.serving.config import ServeConfig
from sentiment_tf.serving.limits import LimitExceeded
from sentiment_tf.serving.metrics import ServeMetrics
from sentiment_tf.serving.predictor import Predictor
from sentiment_tf.serving.segment_pool import segment_pool, segment_texts

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status (TF Serving's error shape)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


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


def without_paths(text: str) -> str:
    """``text`` with every filesystem path cut to its last part (no server paths leak)."""
    return re.sub(r"(?:[A-Za-z]:)?(?:/[^\s/:'\"(),]+)+/?", lambda m: Path(m.group()).name or m.group(), text)


def public_message(err: BaseException) -> str:
    """An error's first line, without paths."""
    text = without_paths(str(err).strip().splitlines()[0]) if str(err).strip() else ""
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
    pinned: int | None = None  # served from one version directory: that version only
    current: Loaded | None = None
    failed: dict[int, tuple[tuple[int, ...], str]] = dataclasses.field(default_factory=dict)  # → (identity, error)
    queue: asyncio.Queue | None = None
    worker: asyncio.Task | None = None
    pool_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    refresh_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @classmethod
    def open(cls, name: str, base: Path, workers: int = 0) -> "ModelSlot":
        """The newest version of ``base`` that loads (broken newer ones are reported, not fatal); given a
        version directory, that version only."""
        version_dir = resolve_version_dir(base)  # refuses a directory that is not ours
        pinned = int(version_dir.name) if version_dir == Path(base) and version_dir.name.isdigit() else None
        slot = cls(name, version_dir.parent, workers, pinned)
        slot.refresh()
        if slot.current is None:
            errors = "; ".join(f"version {v}: {msg}" for v, (_, msg) in sorted(slot.failed.items(), reverse=True))
            raise UserError(f"--model {base}: no version loads ({errors})")
        return slot

    def candidates(self) -> list[tuple[int, tuple[int, ...]]]:
        """(version, identity) of every complete export version, newest first."""
        out = []
        found = versions(self.base) if self.base.is_dir() else []
        for v in reversed([v for v in found if v == self.pinned] if self.pinned is not None else found):
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
            log.error("model %s: version %d is gone and %s; unloaded", self.name, current.version,
                      "it was the version asked for" if self.pinned is not None else "no other version loads")
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
            gone = (f"version {self.pinned}, the one served, was removed or fails to load" if self.pinned is not None
                    else "every version was removed or fails to load")
            raise ApiError(503, f"no version of model {self.name} is available ({gone}; see GET /v1/models/{self.name})")
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
    taken: int = 0  # texts[:taken] are in a batch already
    version: int | None = None  # the version that answered the parts so far
    parts: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)  # (label ids, probabilities) in order

    def restart(self) -> None:
        """Forgets the parts answered by a version that has since been replaced: one answer, one version."""
        self.taken, self.version, self.parts = 0, None, []


# A share of one request in a batch: texts[start:end].
_Chunk = tuple[_Pending, int, int]


def _run_batch(predictor: Any, chunks: list[_Chunk]) -> tuple[Any, int, int]:
    """One model call (per 256 texts) for the chunks of a batch: its predictions, and the number of
    model tokens and unknown tokens in it (for the OOV metric).

    Requests arrive already segmented (see :meth:`ModelSlot.submit`); one segmented by a
    version that has since been replaced is segmented again with the serving version's tokenizer.
    """
    inputs = []
    for it, start, end in chunks:
        ready = it.inputs is not None and (it.prepared_by is None or it.prepared_by is predictor)
        inputs.extend(it.inputs[start:end] if ready else predictor.prepare(it.texts[start:end]))
    result = predictor.predict(inputs, prepared=True)
    if result.token_counts is not None:  # counted in the graph: no Python tokenizer in this process
        return result, int(result.token_counts.sum()), int(result.unknown_counts.sum())
    tokens = predictor.tokens(inputs, prepared=True)
    return result, sum(len(t) for t in tokens.tokens), sum(tokens.oov)


CHUNK_TEXTS = 16  # texts a request contributes per turn when requests share a batch


def _take_chunks(active: list[_Pending], max_texts: int, max_chars: int) -> list[_Chunk]:
    """The next batch: requests in arrival order take turns adding up to ``CHUNK_TEXTS`` texts each,
    until the batch holds ``max_texts`` texts or ``max_chars`` characters (a single text always fits), so
    a small request waits for at most the batch in progress, whatever large requests are queued."""
    taken = {id(p): p.taken for p in active}
    n = chars = 0
    while True:
        added = False
        for p in active:
            end = start = taken[id(p)]
            while end < len(p.texts) and end - start < CHUNK_TEXTS and n < max_texts and (
                    n == 0 or chars + len(p.texts[end]) <= max_chars):
                chars += len(p.texts[end])
                n, end = n + 1, end + 1
            added = added or end > start
            taken[id(p)] = end
        if not added or n >= max_texts or chars >= max_chars:
            break
    return [(p, p.taken, taken[id(p)]) for p in active if taken[id(p)] > p.taken]


async def _wait_for_requests(queue: asyncio.Queue, active: list[_Pending], cfg: ServeConfig) -> None:
    """Adds waiting requests to ``active``: blocks for the first when there is none, then waits up to
    ``--batch-timeout-ms`` for more while the batch is short of ``--max-batch`` texts."""
    loop = asyncio.get_running_loop()
    if not active:
        active.append(await queue.get())
        deadline = loop.time() + cfg.batch_timeout_ms / 1000
        while sum(len(p.texts) for p in active) < cfg.max_batch and (remaining := deadline - loop.time()) > 0:
            try:
                active.append(await asyncio.wait_for(queue.get(), remaining))
            except asyncio.TimeoutError:
                break
    while not queue.empty():
        active.append(queue.get_nowait())


def _answer(chunks: list[_Chunk], version: int, batch: tuple[Any, int, int], slot: "ModelSlot",
            metrics: ServeMetrics) -> None:
    """Hands each chunk its predictions; a request whose last chunk this was gets its answer."""
    result, tokens, oov = batch
    metrics.batch(slot.name, len(result.labels))
    metrics.predicted(slot.name, version, result.labels, result.probabilities, tokens, oov)
    at = 0
    for it, start, end in chunks:
        n = end - start
        it.parts.append((result.label_ids[at:at + n], result.probabilities[at:at + n]))
        it.taken, at = end, at + n
        if it.taken == len(it.texts) and not it.future.done():
            ids = np.concatenate([i for i, _ in it.parts])
            it.future.set_result(BatchResult(version, [result.label_names[i] for i in ids], ids,
                                             np.concatenate([pr for _, pr in it.parts]), result.label_names))


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
    active: list[_Pending] = []  # requests with texts still to predict, in arrival order
    while True:
        await _wait_for_requests(slot.queue, active, cfg)
        active[:] = [p for p in active if not p.future.done()]  # answered, failed, or its client is gone
        if not active:
            continue
        loaded = slot.current
        if loaded is None:
            for it in active:
                it.future.set_exception(ApiError(503, f"no version of model {slot.name} is available"))
            active.clear()
            continue
        if loaded.version not in published:
            published.add(loaded.version)
            metrics.loaded(slot.name, loaded.version, loaded.predictor.metadata)
        for it in active:
            if it.version is None:
                it.version = loaded.version
            elif it.version != loaded.version:
                it.restart()
                it.version = loaded.version
        chunks = _take_chunks(active, cfg.max_batch, cfg.batch_chars)
        try:
            _answer(chunks, loaded.version, await loop.run_in_executor(executor, _run_batch, loaded.predictor, chunks),
                    slot, metrics)
            continue
        except Exception as err:  # noqa: BLE001 - find the culprit below
            if len(chunks) == 1:
                failures = [(chunks[0][0], err)]
            else:
                failures = []
                # One request's texts must not fail the others batched with it: retry each alone.
                for chunk in chunks:
                    try:
                        _answer([chunk], loaded.version, await loop.run_in_executor(
                            executor, _run_batch, loaded.predictor, [chunk]), slot, metrics)
                    except Exception as one_err:  # noqa: BLE001 - reported to that request only
                        failures.append((chunk[0], one_err))
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
        shown = name if len(name) <= 64 else name[:64] + "…"  # TF Serving's wording; never echo a whole body
        raise ApiError(404, f"Servable not found for request: Latest({shown})")
    return slots[name]


MAX_INT_DIGITS = 64


def _parse_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:  # Python refuses > 4,300 digits with a ValueError; nobody sends 65
        raise ApiError(400, f"malformed JSON request body: an integer of {len(digits)} digits (at most "
                            f"{MAX_INT_DIGITS})")
    return int(digits)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)  # a Python function: the thread parsing can hand the GIL over between objects


def json_body(raw: bytes) -> Any:
    """The parsed body; every way it can be malformed is a 400. The hooks are Python calls, so a parse in
    a thread lets the event loop run between values (C's scanner alone holds the GIL throughout)."""
    try:
        return json.loads(raw, parse_int=_parse_int, object_pairs_hook=_object)
    except RecursionError:
        raise ApiError(400, "malformed JSON request body: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ApiError(400, f"malformed JSON request body: {str(err)[:200]}") from None


INLINE_PARSE_BYTES = 65536  # larger bodies are parsed off the event loop


def _parse_apart(read: Callable[[Any], Any], raw: bytes) -> tuple[Any, ApiError | None]:
    """``read(json_body(raw))``, or the error it raised without its traceback: the parsed body (a million
    objects, maybe) is freed in this thread, not on the event loop."""
    try:
        return read(json_body(raw)), None
    except ApiError as err:
        return None, ApiError(err.status, err.message, err.headers)


async def read_json(request: Request, parser: ThreadPoolExecutor, read: Callable[[Any], Any] = lambda body: body) -> Any:
    """``read`` (validation: it returns what the route needs) of the request's parsed JSON body."""
    raw = await request.body()
    if len(raw) <= INLINE_PARSE_BYTES:
        return read(json_body(raw))
    out, err = await asyncio.get_running_loop().run_in_executor(parser, _parse_apart, read, raw)
    if err is not None:
        raise err
    return out


def check_texts(texts: Any, what: str, cfg: ServeConfig) -> list[str]:
    """A non-empty list of strings within ``--max-texts`` and ``--max-chars``; TF Serving's
    ``{"text": "..."}`` rows are unwrapped."""
    if not isinstance(texts, list) or not texts:
        raise ApiError(400, f"{what} must be a non-empty list of strings")
    if len(texts) > cfg.max_texts:
        raise ApiError(413, f"{len(texts)} texts in one request; the limit is {cfg.max_texts} (--max-texts)")
    out = []
    for i, t in enumerate(texts):
        if isinstance(t, dict) and len(t) == 1:  # TF Serving row format: {"text": "..."} (name checked)
            t = next(iter(t.values()))
        if not isinstance(t, str):
            raise ApiError(400, f"{what}[{i}] must be a string, got {type(t).__name__}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:  # valid JSON ("\ud800") but no text: a lone UTF-16 surrogate
            raise ApiError(400, f"{what}[{i}] is not valid Unicode text (it holds a lone surrogate, "
                                "e.g. \\ud800)") from None
        out.append(t)
    long = next((i for i, t in enumerate(out) if len(t) > cfg.max_chars), None)
    if long is not None:
        raise ApiError(413, f"{what}[{long}] has {len(out[long])} characters; the limit is {cfg.max_chars} "
                            "(--max-chars)")
    return out


def parse_tf_serving_body(body: Any, cfg: ServeConfig, input_name: str = "text") -> tuple[list[str], bool]:
    """The texts of a TF Serving REST predict request, and whether it used the columnar format. Named
    inputs must be the signature's, as TF Serving requires."""
    if not isinstance(body, dict):
        raise ApiError(400, 'the request body must be a JSON object with "instances" or "inputs"')
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise ApiError(400, f"signature {signature!r} is not served here; use serving_default (raw text)")
    if ("instances" in body) == ("inputs" in body):
        raise ApiError(400, 'give exactly one of "instances" (row format) or "inputs" (columnar format)')
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict):  # {"inputs": {"text": [...]}}
            check_input_names(inputs, input_name)
            inputs = inputs[input_name]
        return check_texts(inputs, "inputs", cfg), True
    instances = body["instances"]
    if isinstance(instances, list):
        for row in instances:
            if isinstance(row, dict):  # {"instances": [{"text": "..."}]}
                check_input_names(row, input_name)
    return check_texts(instances, "instances", cfg), False


def check_input_names(named: dict, input_name: str) -> None:
    if list(named) != [input_name]:
        given = ", ".join(repr(k[:64]) for k in list(named)[:3]) or "none"
        raise ApiError(400, f"the signature's only input is {input_name!r}; got {given}")


def parse_friendly_body(body: Any, cfg: ServeConfig) -> tuple[Any, list[str]]:
    """``{"texts": [...], "model": name}`` → (model name or None, the checked texts)."""
    if not isinstance(body, dict) or "texts" not in body:
        raise ApiError(400, 'send {"texts": ["...", ...]} (and "model" when several are served)')
    return body.get("model"), check_texts(body["texts"], "texts", cfg)


# ---------------------------------------------------------------------------------------------
# The application


def add_error_handlers(app: FastAPI) -> None:
    """Every error answers ``{"error": message}``; a request FastAPI cannot parse is a 400, not its 422."""
    @app.exception_handler(ApiError)
    @app.exception_handler(LimitExceeded)
    async def api_error(_: Request, err: ApiError | LimitExceeded) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status, headers=getattr(err, "headers", None))

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
                         "reason": NOTHING_TO_CLASSIFY})
    return rows


def add_status_routes(app: FastAPI, slots: dict[str, ModelSlot], metrics: ServeMetrics) -> None:
    """The read-only routes: health, Prometheus metrics, TF Serving's version status and metadata."""

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        # ok or not, nothing more: it answers without a key (versions are on GET /v1/models/<name>).
        healthy = all(s.healthy() for s in slots.values())
        return JSONResponse({"status": "ok" if healthy else "unavailable"}, status_code=200 if healthy else 503)

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


class WorkLimit:
    """The work in progress: prediction requests past their body (waiting or predicted) and their
    characters. Past either limit a request is a 503 with Retry-After, at once (load shedding); idle and
    still-sending connections cost nothing here (see limits.TimedH11Protocol)."""

    def __init__(self, max_requests: int, max_chars: int):
        self.max_requests, self.max_chars = max_requests, max_chars
        self.requests = self.chars = 0

    @contextlib.contextmanager
    def admit(self, texts: list[str]):
        chars = sum(map(len, texts))
        busy = None
        if self.requests >= self.max_requests:
            busy = f"{self.requests} requests in progress (--limit-concurrency {self.max_requests})"
        elif self.requests and self.chars + chars > self.max_chars:  # one request alone is always admitted
            busy = f"{self.chars} characters waiting for the model (--max-queued-chars {self.max_chars})"
        if busy:
            raise ApiError(503, f"busy: {busy}; retry shortly", {"retry-after": "1"})
        self.requests, self.chars = self.requests + 1, self.chars + chars
        try:
            yield
        finally:
            self.requests, self.chars = self.requests - 1, self.chars - chars


def create_app(cfg: ServeConfig, slots: dict[str, ModelSlot], metrics: ServeMetrics | None = None) -> Any:
    metrics = metrics or ServeMetrics()
    work = WorkLimit(cfg.limit_concurrency, cfg.max_queued_chars)

    executor = ThreadPoolExecutor(max_workers=max(2, len(slots)), thread_name_prefix="predict")
    segmenter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment")  # jieba: one GIL anyway
    parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse-json")

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
        for pool in (executor, segmenter, parser):
            pool.shutdown(wait=False, cancel_futures=True)
        for slot in slots.values():
            if slot.current is not None and slot.current.pool is not None:
                # Not waiting: a worker may still segment an abandoned request; it exits with this process.
                slot.current.pool.shutdown(wait=False, cancel_futures=True)

    # Swagger UI loads its assets from a CDN: off unless asked for.
    # No trailing-slash redirects: Starlette builds their Location from the client's Host header.
    app = FastAPI(title="sentiment_tf", lifespan=lifespan, docs_url="/docs" if cfg.docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if cfg.docs else None, redirect_slashes=False)

    add_error_handlers(app)
    add_status_routes(app, slots, metrics)

    @app.post("/v1/models/{name}:predict")
    async def tf_serving_predict(name: str, request: Request) -> JSONResponse:
        slot = slot_for(slots, name)
        input_name = slot.current.predictor.input_name if slot.current is not None else "text"
        texts, columnar = await read_json(request, parser, lambda body: parse_tf_serving_body(body, cfg, input_name))
        with work.admit(texts):
            out = await slot.submit(texts, segmenter, prepared=not cfg.segment)
        probs, ids = out.probabilities.tolist(), out.label_ids.tolist()
        # JSONResponse directly: FastAPI's default encoder walks every number in Python first.
        if columnar:
            return JSONResponse({"outputs": {"probabilities": probs, "label_id": ids, "label": out.labels}})
        return JSONResponse({"predictions": [{"probabilities": p, "label_id": i, "label": lab}
                                             for p, i, lab in zip(probs, ids, out.labels)]})

    @app.post("/predict")
    async def friendly_predict(request: Request) -> JSONResponse:
        name, texts = await read_json(request, parser, lambda body: parse_friendly_body(body, cfg))
        slot = slot_for(slots, name)
        with work.admit(texts):
            out = await slot.submit(texts, segmenter)
        return JSONResponse({"model": slot.name, "version": out.version,
                             "predictions": friendly_predictions(texts, out)})

    return app


