"""The service's parts that need no model or process: fair batching, JSON parsing off the event loop,
the work limit, API key headers and option checks."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from sentiment_tf.core.errors import UserError
from sentiment_tf.serving.app import (
    ApiError,
    Loaded,
    ModelSlot,
    WorkLimit,
    _batch_worker,
    _Pending,
    _take_chunks,
    read_json,
    slot_for,
)
from sentiment_tf.serving.config import HttpConfig, ServeConfig
from sentiment_tf.serving.limits import RequestLimits
from sentiment_tf.serving.metrics import ServeMetrics
from sentiment_tf.serving.predictor import Predictions


class Recording:
    """A predictor that records the texts of each model call (label 正面 when a text has 好)."""

    label_names = ["正面", "负面"]
    metadata: dict = {}

    def __init__(self):
        self.calls: list[list[str]] = []

    def prepare(self, texts):
        return list(texts)

    def predict(self, texts, prepared=False):
        self.calls.append(list(texts))
        probs = np.array([[0.9, 0.1] if "好" in t else [0.2, 0.8] for t in texts], np.float32).reshape(-1, 2)
        ids = probs.argmax(1)
        return Predictions([self.label_names[i] for i in ids], ids, probs, self.label_names)

    def tokens(self, texts, prepared=False):
        from sentiment_tf.evaluation.drift import Tokens

        return Tokens([list(t) for t in texts], [0] * len(texts))


def _run_worker(pending_texts: list[list[str]], **cfg) -> tuple[list, Recording]:
    """Queues the requests at once, runs the batch worker until all are answered: (answers, predictor)."""
    predictor = Recording()

    async def scenario():
        slot = ModelSlot("m", Path("."), current=Loaded(1, (), predictor))
        slot.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        pending = [_Pending(t, t, predictor, loop.create_future()) for t in pending_texts]
        for p in pending:
            slot.queue.put_nowait(p)
        worker = asyncio.create_task(_batch_worker(slot, ServeConfig(model=["m"], **cfg), ThreadPoolExecutor(1),
                                                   ServeMetrics()))
        order = []
        for p in pending:
            p.future.add_done_callback(lambda _, p=p: order.append(pending.index(p)))
        results = await asyncio.gather(*(p.future for p in pending))
        worker.cancel()
        return results, order

    (results, order) = asyncio.run(scenario())
    return results, order, predictor


def test_a_small_request_is_not_held_up_by_large_ones():
    """Three 300-text requests then a 2-text one: the small one is answered by the first model call
    (it waited for all 900 texts before), and every request gets its own texts' answers in order."""
    big = [[f"{'好' if i % 3 else '差'}{k}-{i}" for i in range(300)] for k in range(3)]
    small = ["好极了", "差劲"]
    results, order, predictor = _run_worker([*big, small], batch_chars=2000)
    assert order[0] == 3  # the small request first
    assert small[0] in predictor.calls[0] and small[1] in predictor.calls[0]
    assert max(sum(map(len, call)) for call in predictor.calls) <= 2000
    for texts, out in zip([*big, small], results):
        assert out.labels == ["正面" if "好" in t else "负面" for t in texts]
        assert out.probabilities.shape == (len(texts), 2) and out.version == 1
    assert sorted(t for call in predictor.calls for t in call) == sorted(t for r in [*big, small] for t in r)


def test_chunks_take_turns_within_the_limits():
    loop = asyncio.new_event_loop()
    a = _Pending(["x" * 10] * 40, None, None, loop.create_future())
    b = _Pending(["y" * 10] * 3, None, None, loop.create_future())
    chunks = _take_chunks([a, b], max_texts=1024, max_chars=250)
    assert [(c[0] is a, c[1], c[2]) for c in chunks] == [(True, 0, 22), (False, 0, 3)]  # 16 + 3, then a's turn again
    assert _take_chunks([a], max_texts=5, max_chars=10**6) == [(a, 0, 5)]
    huge = _Pending(["z" * 5000], None, None, loop.create_future())
    assert _take_chunks([huge], max_texts=8, max_chars=100) == [(huge, 0, 1)]  # one text always fits
    loop.close()


def test_large_bodies_are_parsed_off_the_event_loop():
    """1.3 M JSON objects take ~0.2 s to parse; parsed on the loop, /healthz waited that long."""
    raw = b'{"texts": [' + b"{}," * 1_300_000 + b"{}]}"

    class Body:
        async def body(self):
            return raw

    async def scenario():
        gaps, done = [], False

        async def ticker():
            while not done:
                t0 = time.perf_counter()
                await asyncio.sleep(0.001)
                gaps.append(time.perf_counter() - t0)

        tick = asyncio.create_task(ticker())
        body = await read_json(Body(), ThreadPoolExecutor(1))
        done = True
        await tick
        return body, max(gaps)

    body, worst = asyncio.run(scenario())
    assert len(body["texts"]) == 1_300_001
    assert worst < 0.1, f"the event loop stalled {worst:.3f} s"


def test_json_and_model_name_errors_are_short_400s_and_404s():
    from sentiment_tf.serving.app import json_body

    for raw in (b'{"texts": [' + b"1" * 5000 + b"]}", b'{"x": -' + b"7" * 4301 + b', "texts": ["a"]}'):
        with pytest.raises(ApiError, match="digits") as err:
            json_body(raw)
        assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        slot_for({"lstm": object()}, "x" * 100_000)
    assert err.value.status == 404 and len(err.value.message) < 150 and "lstm" not in err.value.message


def test_work_limit_sheds_load_with_retry_after():
    work = WorkLimit(max_requests=2, max_chars=100)
    with work.admit(["a" * 150]):  # one request alone is always admitted
        with pytest.raises(ApiError, match="--max-queued-chars") as err:
            with work.admit(["b"]):
                pass
        assert err.value.status == 503 and err.value.headers == {"retry-after": "1"}
    with work.admit(["a"]), work.admit(["b"]):
        with pytest.raises(ApiError, match="--limit-concurrency"):
            with work.admit(["c"]):
                pass
    assert (work.requests, work.chars) == (0, 0)


def test_either_key_header_is_enough():
    limits = RequestLimits(None, 100, 1.0, api_key="s3cret")
    ok = [{b"x-api-key": b"s3cret"}, {b"authorization": b"Bearer s3cret"},
          {b"x-api-key": b"", b"authorization": b"Bearer s3cret"},  # an empty X-API-Key spoilt the Bearer key
          {b"x-api-key": b"wrong", b"authorization": b"bearer s3cret"}]
    bad = [{}, {b"x-api-key": b""}, {b"x-api-key": b"s3creT"}, {b"authorization": b"s3cret"},
           {b"authorization": b"Bearer "}]
    assert all(limits._authorised(h) for h in ok)
    assert not any(limits._authorised(h) for h in bad)


def test_api_key_file(tmp_path: Path):
    key = tmp_path / "key"
    key.write_text("s3cret\n", encoding="utf-8")
    assert HttpConfig(api_key_file=str(key)).resolved_api_key() == "s3cret"
    key.write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="first line is empty"):
        HttpConfig(api_key_file=str(key)).resolved_api_key()
    with pytest.raises(UserError, match="give one of them"):
        HttpConfig(api_key="a", api_key_file=str(key))


def test_the_port_is_bound_before_loading_and_answers_without_nagle_delay():
    """asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP: without it every response
    waited ~40 ms for the client's delayed ACK (single-text p50 8 → 52 ms)."""
    import socket

    from sentiment_tf.serving.lifecycle import bind

    sock = bind("127.0.0.1", 0)
    with pytest.raises(UserError, match="in use"):
        bind("127.0.0.1", sock.getsockname()[1])

    async def scenario() -> int:
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        def on_connection(reader, writer):
            accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        nodelay = await asyncio.wait_for(accepted, 5)
        writer.close()
        server.close()
        return nodelay

    assert asyncio.run(scenario()) != 0
