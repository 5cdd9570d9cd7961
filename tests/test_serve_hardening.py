"""The local service under a fault probe, on 127.0.0.1: poisoned and malformed requests, a killed
segmentation worker, oversize bodies, idle and half-sent connections, clients that hang up, large
requests beside small ones, load shedding, a busy port, a pinned version, shutdown with requests in
flight, versions deleted and re-used, a corrupt newest version, leaks and the API key."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_MODEL_ARGS, Server, assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

httpx = pytest.importorskip("httpx")

TEXTS = ["这家酒店很干净，服务也好", "太差了，再也不来了", "一般般吧", "物流很快包装完好"]
GOLDEN_SEGMENTED = Path(__file__).parent / "golden" / "lstm_segmented_export"


@pytest.fixture(scope="module")
def exports(tmp_path_factory, reviews: pd.DataFrame, tiny_lstm: Path) -> Path:
    """Two exports of different models (``a/1``, the worker's shared tiny model, and ``b/1``) in a work directory."""
    work = tmp_path_factory.mktemp("hardening")
    shutil.copytree(tiny_lstm, work / "a")
    reviews.head(300).to_csv(work / "small.csv", index=False)
    from sentiment_tf import train  # in-process: the servers under test run in their own processes

    assert train.main(["--data", str(work / "small.csv"), "--output", str(work / "b"), "--run-dir",
                       str(work / "run-b"), *TINY_MODEL_ARGS, "--seed", "2", "--learning-rate", "0.02"]) == 0
    return work


def _probs(body: dict) -> np.ndarray:
    return np.array([[p["probabilities"][n] for n in ("正面", "负面")] for p in body["predictions"]])


def _reference(version_dir: Path, texts: list[str]) -> np.ndarray:
    from sentiment_tf.serving.predictor import Predictor

    return Predictor.load(version_dir).predict(texts).probabilities


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def _start(exports: Path, work: Path, *options: str):
    """A server on a private copy of export ``a`` with short limits; returns (server, base dir)."""
    base = work / "models"
    shutil.copytree(exports / "a", base)
    srv = Server("--model", f"lstm={base}", "--poll-seconds", "0.5", "--timeout-request", "2",
                 "--timeout-keep-alive", "1", "--shutdown-timeout", "2", "--max-body-bytes", "100000",
                 "--segment-workers", "2", *options, cwd=work)
    return srv, base


@pytest.fixture(scope="module")
def shared(exports: Path, tmp_path_factory):
    """One server for the probes that leave it as they found it."""
    srv, base = _start(exports, tmp_path_factory.mktemp("shared"))
    yield srv, base
    srv.stop()


@pytest.fixture(scope="module")
def roomy(exports: Path, tmp_path_factory):
    """A server for large requests and many connections: full-size bodies, a 30 s request timeout (idle
    sockets stay until evicted), at most 100 connections and 4 requests in progress. The last test of
    this module shuts it down."""
    srv, base = _start(exports, tmp_path_factory.mktemp("roomy"), "--max-body-bytes", str(8 << 20), "--timeout-request",
                       "30", "--limit-connections", "100", "--limit-concurrency", "4", "--max-queued-chars", "10000000")
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


@pytest.fixture(scope="module")
def long_texts(reviews: pd.DataFrame):
    """``long_texts(n, chars)``: n texts of that many characters, cut from the bundled reviews."""
    corpus = "".join(reviews.text.astype(str))

    def make(n: int, chars: int) -> list[str]:
        return [corpus[(i * 997) % (len(corpus) - chars):][:chars] for i in range(n)]
    return make


@pytest.fixture
def served(exports: Path, tmp_path: Path):
    """A server of its own, for the probes that stop it or change its versions."""
    srv, base = _start(exports, tmp_path)
    yield srv, base
    if srv.proc.poll() is None:
        srv.stop()


def test_poisoned_and_malformed_requests_fail_alone(shared):
    srv, base = shared
    ref = _reference(base / "1", TEXTS)
    poison = [b'{"texts": ["\\ud800"]}', b'{"texts": ["ok", "\\udfff bad"]}', b'{"texts": ["x"], "model": ["lstm"]}',
              b'{"texts": ["x"], "model": {"a": 1}}', b'{"texts": ' + b"[" * 40_000 + b"]" * 40_000 + b"}",
              b"[" * 90_000]

    def valid(i: int):
        return srv.post("/predict", {"texts": [TEXTS[i % 4]]})

    def bad(i: int):
        return srv.post("/predict", poison[i % len(poison)])

    with ThreadPoolExecutor(12) as pool:
        good = [pool.submit(valid, i) for i in range(120)]
        evil = [pool.submit(bad, i) for i in range(36)]
        good, evil = [f.result() for f in good], [f.result() for f in evil]
    assert [r.status_code for r in good].count(200) == 120
    for i, r in enumerate(good):
        np.testing.assert_allclose(_probs(r.json())[0], ref[i % 4], atol=1e-5)
    assert {r.status_code for r in evil} == {400}, {r.status_code: r.text[:200] for r in evil}
    messages = " ".join(r.json()["error"] for r in evil)
    for fragment in ("lone surrogate", '"model" must be a string', "nested too deeply"):
        assert fragment in messages


def test_texts_without_words_get_no_label(shared):
    srv, _ = shared
    body = srv.post("/predict", {"texts": ["", "   ", "😀😀👍", "！！？", "好"]}).json()
    labels = [p["label"] for p in body["predictions"]]
    assert labels[:4] == [None] * 4 and labels[4] in ("正面", "负面")
    assert all(p["reason"] for p in body["predictions"][:4])
    # TF Serving routes stay TF Serving's: a prediction for every instance.
    rows = srv.post("/v1/models/lstm:predict", {"instances": ["", "好"]}).json()["predictions"]
    assert len(rows) == 2 and all(len(r["probabilities"]) == 2 for r in rows)


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except (OSError, ValueError, IndexError):
                continue
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_raw_text_exports_need_no_segmentation_workers(shared):
    srv, _ = shared
    assert not [pid for pid, cmd in _children(srv.proc.pid) if "spawn_main" in cmd], _children(srv.proc.pid)
    from sentiment_tf.models.lstm.preprocessor import Tokenizer

    def counted(name: str) -> float:  # the OOV metric's counters, counted in the graph
        lines = httpx.get(srv.url + "/metrics").text.splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "_total{"))

    before = counted("sentiment_tf_tokens"), counted("sentiment_tf_oov_tokens")
    assert srv.post("/predict", {"texts": TEXTS}).status_code == 200
    assert counted("sentiment_tf_tokens") - before[0] == sum(len(Tokenizer("word").tokenize(t)) for t in TEXTS)
    assert counted("sentiment_tf_oov_tokens") >= before[1]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_a_killed_segmentation_worker_is_replaced_within_5_seconds(tmp_path: Path):
    """An export made before jieba ran in the graph is segmented in worker processes; one killed is replaced."""
    base = tmp_path / "models"
    shutil.copytree(GOLDEN_SEGMENTED, base)
    srv = Server("--model", f"lstm={base}", "--poll-seconds", "0.5", "--segment-workers", "2", cwd=tmp_path)
    try:
        ref = _reference(base / "1", TEXTS)
        workers = [pid for pid, cmd in _children(srv.proc.pid) if "spawn_main" in cmd]
        assert len(workers) == 2, _children(srv.proc.pid)
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.time()

        def answers():
            r = srv.post("/predict", {"texts": TEXTS})
            return r if r.status_code == 200 else None

        r = _wait(answers, 5, "predictions after a worker was killed")
        np.testing.assert_allclose(_probs(r.json()), ref, atol=1e-5)
        _wait(lambda: httpx.get(srv.url + "/healthz").status_code == 200, 5 - (time.time() - killed_at) + 1, "healthy")
        assert not any(pid == workers[0] for pid, _ in _children(srv.proc.pid))
    finally:
        srv.stop()


def _raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def test_oversize_bodies_are_refused_before_they_are_read(shared):
    srv, _ = shared
    sock = _raw(srv.port)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000000\r\n\r\n" + b'{"texts": ["' + b"a" * 1000)
    answer = b""
    while b"--max-body-bytes" not in answer:  # answered after 1 kB of a declared 100 MB (maybe in 2 segments)
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"--max-body-bytes" in answer
    sock.close()
    # Without Content-Length (chunked): cut off once the streamed bytes pass the limit.
    chunks = (b"x" * 50_000 for _ in range(10))
    r = httpx.post(srv.url + "/predict", content=chunks, timeout=30)
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]


def test_idle_and_half_sent_connections_are_closed_after_the_timeout(shared):
    srv, _ = shared
    idle, half_headers, half_body = _raw(srv.port), _raw(srv.port), _raw(srv.port)
    half_headers.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    half_body.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"texts\"")
    t0 = time.time()
    assert idle.recv(100) == b""  # closed by the server, about --timeout-request 1 later
    assert half_headers.recv(100) == b""
    assert half_body.recv(65536).startswith(b"HTTP/1.1 408")
    assert time.time() - t0 < 5
    for s in (idle, half_headers, half_body):
        s.close()
    assert srv.post("/predict", {"texts": ["好"]}).status_code == 200  # others unaffected


def test_a_client_hanging_up_mid_body_is_not_a_server_error(shared):
    srv, _ = shared
    for _ in range(3):
        sock = _raw(srv.port)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"texts\"")
        time.sleep(0.2)
        sock.close()
    time.sleep(0.5)
    metrics = httpx.get(srv.url + "/metrics").text
    assert 'sentiment_tf_http_requests_total{route="/predict",status="499"} 3.0' in metrics
    assert 'status="5' not in metrics  # no 5xx of any kind
    assert "Traceback" not in srv.log_path.read_text()


def test_small_details_of_the_protocol(shared):
    srv, _ = shared
    assert httpx.head(srv.url + "/healthz").status_code == 200
    assert httpx.get(srv.url + "/healthz").json() == {"status": "ok"}
    r = httpx.post(srv.url + "/predict/", json={"texts": ["好"]}, headers={"Host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers  # no redirect built from the Host header
    r = srv.post("/v1/models/" + "x" * 10_000 + ":predict", {"instances": ["好"]})
    assert r.status_code == 404 and len(r.text) < 200 and "lstm" not in r.text


def test_idle_sockets_never_lock_clients_out(roomy):
    """300 connections that send nothing: they once filled uvicorn's --limit-concurrency (256), and every
    request, /healthz included, got 503. Past --limit-connections (100) a new one evicts the longest-idle."""
    srv = roomy
    idle = [_raw(srv.port) for _ in range(300)]
    try:
        assert httpx.get(srv.url + "/healthz").status_code == 200
        assert srv.post("/predict", {"texts": ["好"]}).status_code == 200

        def closed(sock: socket.socket) -> bool:
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""
            except BlockingIOError:
                return False
            except ConnectionError:
                return True

        # The oldest were closed to make room (the request timeout is 30 s); the newest are still open.
        assert _wait(lambda: sum(map(closed, idle[:190])) == 190, 5, "the oldest connections evicted")
        assert not any(map(closed, idle[-50:]))
    finally:
        for sock in idle:
            sock.close()


def test_large_requests_do_not_hold_up_small_ones_and_load_is_shed(roomy, long_texts):
    srv = roomy
    big = {"texts": long_texts(256, 2000)}
    with ThreadPoolExecutor(4) as pool:
        t0 = time.time()
        bigs = [pool.submit(srv.post, "/predict", big) for _ in range(3)]
        time.sleep(0.3)
        waits = []
        for _ in range(3):
            t = time.time()
            assert srv.post("/predict", {"texts": ["好", "差"]}).status_code == 200
            waits.append(time.time() - t)
        assert [f.result().status_code for f in bigs] == [200] * 3
        busy = time.time() - t0
    # Batched whole, the three large requests went first (the small one waited for all of them).
    assert max(waits) < busy / 3, (waits, busy)

    # Past --limit-concurrency 4: 503 at once, with Retry-After, counted in the metrics.
    with ThreadPoolExecutor(6) as pool:
        answers = [f.result() for f in [pool.submit(srv.post, "/predict", big) for _ in range(6)]]
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) >= 4 and set(codes) <= {200, 503}, codes
    shed = [r for r in answers if r.status_code == 503]
    assert shed and all(r.headers["retry-after"] == "1" and "--limit-concurrency" in r.json()["error"] for r in shed)
    assert f'sentiment_tf_http_requests_total{{route="/predict",status="503"}} {len(shed)}.0' in httpx.get(
        srv.url + "/metrics").text


def test_a_busy_port_is_one_line_before_anything_loads(exports: Path, tmp_path: Path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    t0 = time.time()
    proc = cli("serve", "--model", str(exports / "a"), "--port", str(taken.getsockname()[1]), cwd=tmp_path,
               process=True)
    assert time.time() - t0 < 5
    assert_user_error(proc, "port", "in use")
    taken.close()


def test_several_models_one_missing_is_one_line_on_the_way_out(exports: Path, tmp_path: Path):
    # The README's multi-model command with one missing model once printed "Exception ignored … OSError:
    # [Errno 9] Bad file descriptor" after its error line.
    proc = cli("serve", "--model", str(exports / "a"), "--model", f"bert={tmp_path / 'nope'}", "--port", "0",
               cwd=tmp_path, process=True)
    assert_user_error(proc, "model directory not found", "nope")
    assert proc.stderr.strip().count("\n") == 0 and "Exception ignored" not in proc.stderr, proc.stderr


def test_a_version_directory_pins_that_version(exports: Path, tmp_path: Path):
    from sentiment_tf.serving.app import ModelSlot, ServeConfig

    base = tmp_path / "m"
    shutil.copytree(exports / "a" / "1", base / "1")
    shutil.copytree(exports / "b" / "1", base / "2")
    (name, path), = ServeConfig(model=[str(base / "1")]).model_dirs().items()
    assert name == "m"  # the model's name, not "1"
    slot = ModelSlot.open(name, path)
    assert (slot.pinned, slot.current.version) == (1, 1)
    np.testing.assert_allclose(slot.current.predictor.predict(TEXTS).probabilities, _reference(exports / "a" / "1", TEXTS),
                               atol=1e-6)
    assert [e["version"] for e in slot.status()["model_version_status"]] == ["1"]
    shutil.rmtree(base / "1")
    slot.refresh()
    assert slot.current is None  # its version is gone: nothing served, never version 2
    assert ModelSlot.open(name, base).current.version == 2  # the base directory: the newest


def test_delete_and_retrain_serves_the_new_weights_within_one_poll(served, exports: Path):
    srv, base = served
    old = _reference(base / "1", TEXTS)
    new = _reference(exports / "b" / "1", TEXTS)
    assert np.abs(old - new).max() > 1e-3  # the two models differ
    shutil.rmtree(base / "1")
    shutil.copytree(exports / "b" / "1", base / ".incoming")
    (base / ".incoming").rename(base / "1")  # the number is reused, as an export after deleting does
    # The very next request is answered by the new weights (it waits for them to load), not the old.
    r = srv.post("/predict", {"texts": TEXTS})
    assert r.status_code == 200 and r.json()["version"] == 1
    np.testing.assert_allclose(_probs(r.json()), new, atol=1e-5)

    # Every version gone: not served any more (503 from the next request on), and health says so.
    shutil.rmtree(base / "1")
    assert srv.post("/predict", {"texts": ["好"]}).status_code == 503
    _wait(lambda: httpx.get(srv.url + "/healthz").status_code == 503, 5, "unhealthy")
    assert "no version" in srv.post("/predict", {"texts": ["好"]}).json()["error"]

    # A version that fails to load is retried when its files change.
    shutil.copytree(exports / "a" / "1", base / ".incoming")
    pb = base / ".incoming" / "saved_model.pb"
    good_pb = pb.read_bytes()
    pb.write_bytes(b"caught mid-copy")
    (base / ".incoming").rename(base / "2")
    _wait(lambda: any(e["version"] == "2" and e["state"] == "END" for e in
                      httpx.get(srv.url + "/v1/models/lstm").json()["model_version_status"]), 10, "failure reported")
    pb = base / "2" / "saved_model.pb"
    pb.write_bytes(good_pb)
    r = _wait(lambda: (lambda r: r if r.status_code == 200 else None)(srv.post("/predict", {"texts": TEXTS})), 10,
              "the mended version served")
    assert r.json()["version"] == 2
    np.testing.assert_allclose(_probs(r.json()), old, atol=1e-5)


def test_corrupt_newest_version_does_not_stop_startup(exports: Path, tmp_path: Path):
    base = tmp_path / "models"
    shutil.copytree(exports / "a", base)
    shutil.copytree(exports / "b" / "1", base / "2")
    (base / "2" / "saved_model.pb").write_bytes(b"truncated")
    srv = Server("--model", f"lstm={base}", "--poll-seconds", "0", cwd=tmp_path)
    try:
        status = httpx.get(srv.url + "/v1/models/lstm").json()["model_version_status"]
        assert status[0]["version"] == "1" and status[0]["state"] == "AVAILABLE"
        broken = next(e for e in status if e["version"] == "2")
        assert broken["state"] == "END" and "damaged" in broken["status"]["error_message"]
        assert str(tmp_path) not in json.dumps(status)  # no server paths
        assert srv.post("/predict", {"texts": ["好"]}).json()["version"] == 1
    finally:
        srv.stop()


def test_no_server_paths_no_cdn_docs_and_the_api_key(exports: Path, tmp_path: Path):
    (tmp_path / "key").write_text("s3cret\n", encoding="utf-8")
    srv = Server("--model", f"lstm={exports / 'a'}", "--api-key-file", "key", "--poll-seconds", "0", cwd=tmp_path)
    try:
        assert b"s3cret" not in Path(f"/proc/{srv.proc.pid}/cmdline").read_bytes()
        health = httpx.get(srv.url + "/healthz")  # for load balancers: no key, and nothing but the status
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        r = srv.post("/predict", {"texts": ["好"]})
        assert r.status_code == 401 and "API key" in r.json()["error"]
        wrong = httpx.post(srv.url + "/predict", json={"texts": ["好"]}, headers={"X-API-Key": "s3creT"})
        assert wrong.status_code == 401
        for headers in ({"X-API-Key": "s3cret"}, {"Authorization": "Bearer s3cret"},
                        {"X-API-Key": "", "Authorization": "Bearer s3cret"}):
            assert httpx.post(srv.url + "/predict", json={"texts": ["好"]}, headers=headers).status_code == 200
        meta = httpx.get(srv.url + "/v1/models/lstm/metadata", headers={"X-API-Key": "s3cret"}).json()
        text = json.dumps(meta, ensure_ascii=False)
        assert str(exports) not in text and "run_dir" not in text and meta["metadata"]["sentiment_tf"]["labels"]
        assert httpx.get(srv.url + "/docs", headers={"X-API-Key": "s3cret"}).status_code == 404
        from sentiment_tf.serving.client import ServingClient, ServingError

        assert ServingClient(srv.url, "lstm", exports / "a", segment=False, api_key="s3cret").predict(["好"]).labels
        with pytest.raises(ServingError, match="401"):
            ServingClient(srv.url, "lstm", exports / "a", segment=False).predict(["好"])
    finally:
        srv.stop()


def test_one_request_failing_in_a_batch_fails_alone():
    """The batch worker retries a failed batch request by request: only the culprit gets an error (400),
    the others their predictions; a model that fails even a known-good text is the server's fault (500)."""
    from sentiment_tf.serving.app import ApiError, Loaded, ModelSlot, ServeConfig, _batch_worker, _Pending
    from sentiment_tf.serving.metrics import ServeMetrics
    from sentiment_tf.serving.predictor import Predictions

    class Picky:
        label_names = ["正面", "负面"]
        broken = False
        metadata: dict = {}

        def prepare(self, texts):
            return texts

        def tokens(self, texts, prepared=False):
            from sentiment_tf.evaluation.drift import Tokens

            return Tokens([list(t) for t in texts], [0] * len(texts))

        def predict(self, texts, prepared=False):
            if self.broken or "毒" in texts:
                raise ValueError("cannot convert")
            probs = np.tile([[0.9, 0.1]], (len(texts), 1)).astype(np.float32)
            return Predictions(["正面"] * len(texts), np.zeros(len(texts), np.int64), probs, self.label_names)

    async def scenario(broken: bool):
        predictor = Picky()
        slot = ModelSlot("m", Path("."), current=Loaded(1, (), predictor))
        slot.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        pending = [_Pending([t], [t], predictor, loop.create_future()) for t in ("好", "毒", "棒")]
        for p in pending:
            slot.queue.put_nowait(p)  # all waiting: one batch
        predictor.broken = broken
        worker = asyncio.create_task(_batch_worker(slot, ServeConfig(model=["m"]), ThreadPoolExecutor(1), ServeMetrics()))
        results = await asyncio.gather(*(p.future for p in pending), return_exceptions=True)
        worker.cancel()
        return results

    ok, poisoned, ok2 = asyncio.run(scenario(False))
    assert ok.labels == ["正面"] and ok2.labels == ["正面"]
    assert isinstance(poisoned, ApiError) and poisoned.status == 400 and "could not be predicted" in poisoned.message
    assert all(isinstance(r, ApiError) and r.status == 500 for r in asyncio.run(scenario(True)))


def test_sigterm_finishes_what_fits_answers_the_rest_503_and_exits_0(roomy, long_texts):
    """Last in this module: it stops ``roomy``. Heavy requests in flight and a client stuck mid-body;
    --shutdown-timeout 2: once 500s for every cut request, a "killed by SIGTERM" exit, 19 s."""
    srv = roomy
    stuck = _raw(srv.port)
    stuck.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    heavy = {"texts": long_texts(256, 5000)}

    def post():
        try:
            return srv.post("/predict", heavy)
        except httpx.HTTPError as err:
            return err

    with ThreadPoolExecutor(6) as pool:
        answers = [pool.submit(post) for _ in range(6)]
        time.sleep(1.0)
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(timeout=15)
        took = time.time() - t0
        answers = [f.result() for f in answers]
    assert code == 0 and took < 3.0, (code, took)
    assert all(isinstance(r, httpx.Response) for r in answers), answers
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 503}, codes
    cut = [r for r in answers if r.status_code == 503 and "shutting down" in r.json()["error"]]
    assert cut and all(r.headers["connection"] == "close" for r in cut), codes
    stuck.settimeout(5)
    assert stuck.recv(65536).startswith(b"HTTP/1.1 503")
    stuck.close()
    srv.log.close()
