"""Serving: the export as TF Serving sees it, the client, and the real local HTTP service (routes,
errors and limits, batching of concurrent requests, hot reload of new and broken versions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import Server, cli, free_port

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

tf = pytest.importorskip("tensorflow")
httpx = pytest.importorskip("httpx")

GOLDEN = Path(__file__).parent / "golden"
TEXTS = ["这家酒店很干净，服务也好", "太差了，再也不来了", "一般般吧", "ＡＢＣ 好评！😀", ""]


@pytest.fixture(scope="module")
def lstm_export(tmp_path_factory, tiny_lstm: Path) -> Path:
    """A copy of the shared tiny export (the tests add versions to it)."""
    import shutil

    work = tmp_path_factory.mktemp("serve")
    shutil.copytree(tiny_lstm, work / "models" / "lstm")
    return work / "models" / "lstm"


@pytest.fixture(scope="module")
def server(lstm_export: Path):
    srv = Server("--model", str(lstm_export), "--max-texts", "8", "--max-chars", "50", "--poll-seconds", "0.5",
                 cwd=lstm_export.parent.parent)
    yield srv
    srv.stop()


def _reference(export: Path, texts: list[str]) -> np.ndarray:
    from sentiment_tf.serving.predictor import Predictor

    return Predictor.load(export).predict(texts).probabilities


# --- The export as TF Serving loads it -------------------------------------------------------


def test_export_as_tf_serving_sees_it(lstm_export: Path):
    """Signature name, input name and dtype, and a golden REST request converted to tensors the way
    TF Serving's row format does (a list of instances → one batched tensor for the single input)."""
    from sentiment_tf.serving.predictor import Predictor

    loaded = tf.saved_model.load(str(lstm_export / "1"))
    assert sorted(loaded.signatures) == ["embed", "predict_with_counts", "serving_default", "tokenize"]
    sig = loaded.signatures["serving_default"]
    _, inputs = sig.structured_input_signature
    assert {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()} == {"text": (tf.string, [None])}
    assert set(sig.structured_outputs) == {"probabilities", "label_id", "label"}

    golden = json.loads((GOLDEN / "lstm_predict_request.json").read_text(encoding="utf-8"))
    assert golden["signature_name"] == "serving_default"
    out = sig(text=tf.constant(golden["instances"]))
    predictions = [{k: v[i].numpy() for k, v in out.items()} for i in range(len(golden["instances"]))]
    expected = Predictor.load(lstm_export).predict(golden["instances"])
    np.testing.assert_allclose(np.stack([p["probabilities"] for p in predictions]), expected.probabilities, atol=1e-5)
    assert [p["label"].decode() for p in predictions] == expected.labels


def test_the_client_of_a_raw_text_export_needs_no_jieba(lstm_export: Path, tmp_path: Path):
    import subprocess
    import sys

    from tests.helpers import REPO

    code = ("import sys; from sentiment_tf.serving.client import ServingClient; "
            f"body = ServingClient('http://unused', 'lstm', {str(lstm_export)!r}).request_body(['这家酒店很干净']); "
            "assert body['instances'] == ['这家酒店很干净'], body; "
            "assert 'jieba' not in sys.modules and 'tensorflow' not in sys.modules, 'imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_golden_request_is_what_the_client_sends(lstm_export: Path):
    from sentiment_tf.serving.client import ServingClient

    golden = json.loads((GOLDEN / "lstm_predict_request.json").read_text(encoding="utf-8"))
    client = ServingClient("http://unused", "lstm", lstm_export)
    assert client.request_body(golden["instances"]) == {k: golden[k] for k in ("signature_name", "instances")}
    assert client.endpoint == "http://unused/v1/models/lstm:predict"


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None,
                    reason="tensorflow_model_server is not on PATH (it cannot be installed on these machines); "
                           "install TF Serving or use deploy/docker-compose.yml to run this test")
def test_real_tf_serving_matches_in_process_predictions(lstm_export: Path, tmp_path: Path):
    from sentiment_tf.serving.client import ServingClient

    port = free_port()
    proc = subprocess.Popen(["tensorflow_model_server", f"--rest_api_port={port}", "--port=0", "--model_name=lstm",
                             f"--model_base_path={lstm_export.resolve()}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models/lstm", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        result = ServingClient(f"http://127.0.0.1:{port}", "lstm", lstm_export).predict(TEXTS)
        np.testing.assert_allclose(result.probabilities, _reference(lstm_export, TEXTS), atol=1e-5)
    finally:
        proc.terminate()


# --- The local service -----------------------------------------------------------------------


def test_friendly_predict_equals_in_process_predictions(server: Server, lstm_export: Path):
    r = server.post("/predict", {"texts": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "lstm" and body["version"] == 1
    assert [p["text"] for p in body["predictions"]] == TEXTS
    # The empty text gets no label (a 0.5-ish guess would look like an answer); the others the model's.
    *rows, empty = body["predictions"]
    assert empty["label"] is None and empty["probabilities"] is None and "no letters" in empty["reason"]
    probs = np.array([[p["probabilities"][name] for name in ("正面", "负面")] for p in rows])
    np.testing.assert_allclose(probs, _reference(lstm_export, TEXTS[:-1]), atol=1e-5)


def test_tf_serving_routes_row_and_columnar(server: Server, lstm_export: Path):
    ref = _reference(lstm_export, TEXTS[:2])
    rows = server.post("/v1/models/lstm:predict", {"instances": TEXTS[:2]}).json()["predictions"]
    np.testing.assert_allclose([r["probabilities"] for r in rows], ref, atol=1e-5)
    cols = server.post("/v1/models/lstm:predict", {"inputs": {"text": TEXTS[:2]}}).json()["outputs"]
    np.testing.assert_allclose(cols["probabilities"], ref, atol=1e-5)
    assert cols["label"] == [r["label"] for r in rows]
    named = server.post("/v1/models/lstm:predict", {"instances": [{"text": t} for t in TEXTS[:2]]}).json()
    np.testing.assert_allclose([r["probabilities"] for r in named["predictions"]], ref, atol=1e-5)
    status = httpx.get(server.url + "/v1/models/lstm").json()
    assert status["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                                 "status": {"error_code": "OK", "error_message": ""}}
    meta = httpx.get(server.url + "/v1/models/lstm/metadata").json()
    assert meta["metadata"]["sentiment_tf"]["labels"] == ["正面", "负面"]


def test_client_against_the_service(server: Server, lstm_export: Path):
    from sentiment_tf.serving.client import ServingClient, ServingError

    result = ServingClient(server.url, "lstm", lstm_export, segment=False).predict(TEXTS)
    np.testing.assert_allclose(result.probabilities, _reference(lstm_export, TEXTS), atol=1e-5)
    assert result.labels[-1] is None and result.nothing.tolist() == [False] * 4 + [True]  # "": nothing to classify
    with pytest.raises(ServingError, match="404.*Servable not found"):
        ServingClient(server.url, "nope", lstm_export, segment=False).predict(["好"])


def _metrics(server: Server) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_metrics_count_requests_errors_texts_labels_and_oov(server: Server, lstm_export: Path):
    from sentiment_tf.serving.predictor import Predictor

    def value(metrics, name, **labels):
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    predictor = Predictor.load(lstm_export)
    texts = ["这家酒店很干净，服务也好", "太差了，再也不来了", "从未见过的词汇噼里啪啦"]
    before = _metrics(server)
    assert server.post("/predict", {"texts": texts}).status_code == 200
    assert server.post("/v1/models/lstm:predict", {"instances": texts[:2]}).status_code == 200
    assert server.post("/predict", b"{not json").status_code == 400
    assert server.post("/v1/models/nope:predict", {"instances": ["好"]}).status_code == 404
    after = _metrics(server)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("sentiment_tf_http_requests_total", route="/predict", status="200") == 1
    assert delta("sentiment_tf_http_requests_total", route="/predict", status="400") == 1
    assert delta("sentiment_tf_http_errors_total", route="/v1/models/{name}:predict", status="404") == 1
    assert delta("sentiment_tf_http_request_seconds_count", route="/predict") == 2
    assert delta("sentiment_tf_texts_total", model="lstm", version="1") == 5
    expected = predictor.predict(texts + texts[:2]).labels
    for label in set(expected):
        assert delta("sentiment_tf_predicted_labels_total", model="lstm", version="1", label=label) == expected.count(label)
    assert delta("sentiment_tf_confidence_count", model="lstm", version="1") == 5
    tokens = predictor.tokens(texts + texts[:2])
    assert delta("sentiment_tf_tokens_total", model="lstm", version="1") == sum(len(t) for t in tokens.tokens)
    assert delta("sentiment_tf_oov_tokens_total", model="lstm", version="1") == sum(tokens.oov) > 0
    assert value(after, "sentiment_tf_reference_oov_rate", model="lstm", version="1") == pytest.approx(
        predictor.metadata["profile"]["oov_rate"])
    assert delta("sentiment_tf_batch_texts_sum", model="lstm") == 5


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/predict", b"{not json", 400, "malformed JSON"),
    ("/predict", {"texts": []}, 400, "non-empty list"),
    ("/predict", {"texts": ["好", 3]}, 400, "texts[1] must be a string"),
    ("/predict", {"texts": ["好"] * 9}, 413, "limit is 8"),
    ("/predict", {"texts": ["好" * 51]}, 413, "51 characters"),
    ("/predict", {"texts": ["好"], "model": "bert"}, 404, "Servable not found"),
    ("/v1/models/nope:predict", {"instances": ["好"]}, 404, "Servable not found"),
    ("/v1/models/lstm:predict", {"instances": ["好"], "signature_name": "encoded"}, 400, "serving_default"),
    ("/v1/models/lstm:predict", {"instances": ["好"], "inputs": ["好"]}, 400, "exactly one"),
    ("/v1/models/lstm:predict", [1, 2], 400, "JSON object"),
    # TF Serving refuses an input name its signature lacks: once answered 200.
    ("/v1/models/lstm:predict", {"instances": [{"a": "好"}]}, 400, "only input is 'text'; got 'a'"),
    ("/v1/models/lstm:predict", {"inputs": {"a": ["好"]}}, 400, "only input is 'text'"),
    ("/v1/models/lstm:predict", {"inputs": {"text": ["好"], "b": ["好"]}}, 400, "got 'text', 'b'"),
    ("/nothing", {}, 404, "Not Found"),
    # Python refuses integers of > 4,300 digits with a ValueError: once a 500 with a traceback.
    ("/predict", b'{"texts": [' + b"1" * 5000 + b"]}", 400, "5000 digits"),
    ("/v1/models/lstm:predict", b'{"instances": ["a"], "x": ' + b"9" * 5000 + b"}", 400, "5000 digits"),
    ("/predict/", {"texts": ["好"]}, 404, "Not Found"),  # no redirect built from the client's Host header
])
def test_bad_requests_get_tf_serving_error_shape(server: Server, path, body, status, fragment):
    r = server.post(path, body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_concurrent_requests_are_batched_and_answered_correctly(server: Server, lstm_export: Path):
    texts = [f"{TEXTS[i % 4]}{i}" for i in range(40)]
    ref = _reference(lstm_export, texts)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda t: server.post("/predict", {"texts": [t]}), texts))
    assert all(r.status_code == 200 for r in responses)
    got = np.array([[r.json()["predictions"][0]["probabilities"][n] for n in ("正面", "负面")] for r in responses])
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_hot_reload_picks_up_new_versions_and_survives_broken_ones(server: Server, lstm_export: Path):
    def wait_for(predicate, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = httpx.get(server.url + "/v1/models/lstm").json()["model_version_status"]
            if predicate(status):
                return status
            time.sleep(0.3)
        raise AssertionError(status)

    # A new version appears atomically (copied aside, then renamed), as exports do.
    shutil.copytree(lstm_export / "1", lstm_export / ".incoming")
    (lstm_export / ".incoming").rename(lstm_export / "2")
    wait_for(lambda s: s[0]["version"] == "2" and s[0]["state"] == "AVAILABLE")
    assert server.post("/predict", {"texts": ["好"]}).json()["version"] == 2

    # A broken version is reported; version 2 keeps serving.
    broken = lstm_export / ".broken"
    shutil.copytree(lstm_export / "1", broken)
    (broken / "saved_model.pb").write_bytes(b"not a saved model")
    broken.rename(lstm_export / "3")
    status = wait_for(lambda s: any(e["version"] == "3" for e in s))
    assert status[0]["version"] == "2"
    failed = next(e for e in status if e["version"] == "3")
    assert failed["state"] == "END" and failed["status"]["error_message"]
    r = server.post("/predict", {"texts": ["好"]})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}  # nothing more: it needs no key


def test_serve_refuses_a_directory_that_is_not_an_export(tmp_path: Path):
    (tmp_path / "notours").mkdir()
    proc = cli("serve", "--model", "notours", "--port", str(free_port()), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr
