"""`label`: the annotation page's state, its JSON API and its command line (in this process), and the page
itself in headless Chromium against a real server process (test_label_browser.py)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import Server, assert_user_error, cli

pytestmark = pytest.mark.slow  # trains a model

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, reviews: pd.DataFrame, tiny_lstm: Path) -> types.SimpleNamespace:
    """The shared tiny LSTM (a copy: adaptations add versions beside it); 300 reviews it did not train on
    as the pool to label, with their gold labels."""
    import shutil

    work = tmp_path_factory.mktemp("label")
    shutil.copytree(tiny_lstm, work / "model")
    trained_on = set(pd.read_csv(tiny_lstm.parent / "train.csv")["text"])
    shuffled = reviews.drop_duplicates("text").sample(frac=1.0, random_state=5)
    pool = shuffled[~shuffled["text"].isin(trained_on)].head(300)
    pool[["text"]].rename(columns={"text": "review"}).to_csv(work / "pool.csv", index=False)
    return types.SimpleNamespace(work=work, model=work / "model", version=work / "model" / "1",
                                 pool=work / "pool.csv", gold=dict(zip(pool["text"], pool["label"])))


def open_session(tiny, output: Path, **kw):
    from sentiment_tf.labeling.session import LabelSession, score_pool
    from sentiment_tf.labeling.store import LabelStore

    texts = pd.read_csv(tiny.pool)["review"].tolist()
    store = LabelStore(output, ["正面", "负面"], lowercase=True)
    strategy = kw.pop("strategy", "hybrid")
    kw.setdefault("explain", False)  # attributions: the browser test waits for them on the page
    return LabelSession(texts, store, score_pool(tiny.version, texts, strategy), strategy, **kw)


def client_for(session, api_key: str | None = None):
    from starlette.testclient import TestClient

    from sentiment_tf.labeling.app import create_app
    from sentiment_tf.serving.limits import RequestLimits

    return TestClient(RequestLimits(create_app(session, budget=50), 65536, 10.0, api_key, public_paths=("/", "/healthz")))


A = {"session": "tab-aaaaaaaa", "annotator": "ann"}
B = {"session": "tab-bbbbbbbb", "annotator": "bob"}


def test_two_pages_never_share_a_text_and_a_restart_never_shows_a_labelled_one(tiny, tmp_path: Path):
    out = tmp_path / "labels.csv"
    session = open_session(tiny, out)
    api = client_for(session)
    assert "<title>sentiment_tf · label</title>" in api.get("/").text
    shown: dict[str, list[int]] = {"ann": [], "bob": []}
    items = {"ann": api.post("/api/next", json=A).json()["item"], "bob": api.post("/api/next", json=B).json()["item"]}
    assert api.post("/api/next", json=A).json()["item"]["id"] == items["ann"]["id"]  # the same until answered
    # --no-explain: every text answers "attributions off", none is queued for integrated gradients
    assert items["ann"]["explanation"]["off"]
    assert api.get(f"/api/explain/{items['bob']['id']}").json()["explanation"]["off"]
    assert not session.explanations
    for _ in range(8):
        for who, body in (("ann", A), ("bob", B)):
            item = items[who]
            shown[who].append(item["id"])
            assert set(item["probabilities"]) == {"正面", "负面"} and item["suggestion"] in item["probabilities"]
            r = api.post("/api/label", json={**body, "id": item["id"], "label": tiny.gold[item["text"]]})
            assert r.status_code == 200, r.text
            items[who] = r.json()["item"]
            # what the other page holds (shown and prepared) is never given to this one
            other = session.browsers[(B if who == "ann" else A)["session"]].queue
            assert items[who]["id"] not in other
    assert not set(shown["ann"]) & set(shown["bob"])
    labels = pd.read_csv(out)
    assert list(labels.columns) == ["text", "label", "annotator", "time", "suggestion", "suggestion_probability",
                                    "model_version"]
    assert len(labels) == 16 and sorted(labels["annotator"].value_counts().items()) == [("ann", 8), ("bob", 8)]
    assert (labels["label"] == labels["text"].map(tiny.gold)).all()
    assert labels["model_version"].eq("model/1").all() and labels["suggestion_probability"].between(0.5, 1).all()
    progress = api.get("/api/state").json()["progress"]
    assert progress["labelled"] == 16 and sum(progress["counts"].values()) == 16
    assert progress["left"] == 300 - 16 - 4  # two pages, each holding the text shown and the next

    # A new server on the same file: the labelled texts are never shown again, the order goes on.
    again = client_for(open_session(tiny, out))
    seen = set()
    for _ in range(30):
        item = again.post("/api/next", json=A).json()["item"]
        assert item["text"] not in set(labels["text"])
        seen.add(item["id"])
        again.post("/api/label", json={**A, "id": item["id"], "label": "正面"})
    assert len(seen) == 30 and len(pd.read_csv(out)) == 46


def test_undo_and_skip(tiny, tmp_path: Path):
    out = tmp_path / "labels.csv"
    api = client_for(open_session(tiny, out, strategy="uncertainty"))
    first = api.post("/api/next", json=A).json()["item"]
    second = api.post("/api/label", json={**A, "id": first["id"], "label": "负面"}).json()["item"]
    assert pd.read_csv(out)["text"].tolist() == [first["text"]]
    back = api.post("/api/undo", json=A).json()["item"]
    assert back["id"] == first["id"] and pd.read_csv(out).empty
    r = api.post("/api/label", json={**A, "id": second["id"], "label": "正面"})  # not the shown one any more
    assert r.status_code == 409 and "not the one this page shows" in r.json()["error"]
    after = api.post("/api/label", json={**A, "id": first["id"], "label": "正面"}).json()["item"]
    assert after["id"] == second["id"]  # the text that was next before the undo
    nxt = api.post("/api/skip", json={**A, "id": second["id"]}).json()["item"]
    assert nxt["id"] not in (first["id"], second["id"])
    assert pd.read_csv(out)[["text", "label"]].values.tolist() == [[first["text"], "正面"]]
    r = api.post("/api/undo", json=B)
    assert r.status_code == 409 and "nothing to undo" in r.json()["error"]
    # the uncertainty order: the least certain texts first
    margins = [abs(item["probabilities"]["正面"] - item["probabilities"]["负面"]) for item in (first, second, nxt)]
    assert max(margins) < 0.5


def test_overlap_gives_a_second_annotator_the_text_and_reports_kappa(tiny, tmp_path: Path):
    out = tmp_path / "labels.csv"
    session = open_session(tiny, out, overlap=0.5, strategy="random")
    api = client_for(session)
    item = api.post("/api/next", json=A).json()["item"]
    for _ in range(20):
        item = api.post("/api/label", json={**A, "id": item["id"], "label": tiny.gold[item["text"]]}).json()["item"]
    wanted = {t for t in pd.read_csv(out)["text"] if session.wants_second(session.store.key(t))}
    assert 4 <= len(wanted) <= 16
    seconds = []
    item = api.post("/api/next", json=B).json()["item"]
    for _ in range(25):
        if item["second_look"]:
            seconds.append(item["text"])
        # bob disagrees on every other second look
        label = tiny.gold[item["text"]]
        if item["second_look"] and len(seconds) % 2 == 0:
            label = "负面" if label == "正面" else "正面"
        item = api.post("/api/label", json={**B, "id": item["id"], "label": label}).json()["item"]
    assert set(seconds) <= wanted and len(seconds) >= min(len(wanted), 4)
    agreement = api.get("/api/state").json()["progress"]["agreement"]
    assert agreement["pairs"] == len(set(seconds))
    assert agreement["agreement"] == pytest.approx(1 - (len(seconds) // 2) / len(seconds))
    assert agreement["kappa"] is None or -1 <= agreement["kappa"] < 1
    # ann never sees her own texts again
    item = api.post("/api/next", json=A).json()["item"]
    assert not item["second_look"]


def test_bad_requests_get_a_4xx_with_an_error(tiny, tmp_path: Path):
    api = client_for(open_session(tiny, tmp_path / "labels.csv"), api_key="s3cret")
    assert api.get("/").status_code == 200 and api.get("/healthz").status_code == 200  # no data in either
    r = api.post("/api/next", json=A)
    assert r.status_code == 401 and "API key" in r.json()["error"]
    key = {"X-API-Key": "s3cret"}
    item = api.post("/api/next", json=A, headers=key).json()["item"]
    ok = {**A, "id": item["id"], "label": "正面"}
    for body, status, fragment in [
            (b"{not json", 400, "malformed JSON"), (b"[1, 2]", 400, "JSON object"),
            ({"annotator": "ann"}, 400, "missing 'session'"), ({**ok, "session": "x"}, 400, "'session' must be"),
            ({**ok, "annotator": " "}, 400, "'annotator' must be"), ({**ok, "annotator": "a" * 41}, 400, "'annotator'"),
            ({**A, "id": "1", "label": "正面"}, 400, "'id' must be"), ({**A, "id": True, "label": "正面"}, 400, "'id'"),
            ({**A, "id": item["id"], "label": "中性"}, 400, "not one of the model's"),
            ({**A, "id": item["id"], "label": 1}, 400, "'label' must be a string"),
            ({**A, "id": item["id"] + 1, "label": "正面"}, 409, "not the one this page shows")]:
        content = body if isinstance(body, bytes) else json.dumps(body)
        r = api.post("/api/label", content=content, headers=key)
        assert r.status_code == status and fragment in r.json()["error"], (body, r.text)
    assert api.post("/api/label", content=b"x" * 70000, headers=key).status_code == 413
    assert api.get("/api/explain/99999", headers=key).json()["error"].startswith("no text 99999")
    assert api.get("/api/explain/abc", headers=key).status_code == 400
    assert api.get("/nothing", headers=key).json() == {"error": "Not Found"}
    assert api.post("/api/adapt", headers=key).json()["error"].startswith("adaptation is off")
    assert pd.read_csv(tmp_path / "labels.csv").empty if (tmp_path / "labels.csv").exists() else True


def test_ranking_accounts_for_every_text_taken():
    from sentiment_tf.labeling.ranking import Ranker

    rng = np.random.default_rng(0)
    # two tight clusters of 50 near-identical texts, one of 5 outliers: diverse picks leave a cluster at once
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    points = np.concatenate([c + rng.normal(0, 0.01, (k, 2)) for c, k in zip(centres, (50, 50, 5))]).astype(np.float32)
    probs = np.tile([[0.5, 0.5]], (len(points), 1))
    ranker = Ranker("diverse", probs, points, taken=[0], seed=1)
    available = np.ones(len(points), bool)
    available[0] = False
    picks = []
    for _ in range(2):
        i = ranker.pick(available)
        available[i] = False
        ranker.take(i)
        picks.append(i)
    assert {i // 50 for i in picks} == {1, 2}  # the two clusters not yet covered, not cluster 0 again
    assert all(ranker.pick(available) is not None for _ in range(3))
    # every text once, then none
    order = []
    while (i := ranker.pick(available)) is not None:
        assert available[i]
        available[i] = False
        ranker.take(i)
        order.append(i)
    assert len(order) == len(points) - 3
    # uncertainty: the smallest margin first, whatever else was taken
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.5, 0.5]])
    ranker = Ranker("uncertainty", probs, None, taken=[], seed=0)
    assert ranker.pick(np.array([True, True, True, False])) == 1


def test_the_command_refuses_bad_input_before_any_work(tiny, tmp_path: Path):
    pool = str(tiny.pool)
    args = ["--model", str(tiny.model), "--unlabelled", pool, "--text-col", "review", "--port", "0"]
    assert_user_error(cli("label", *args, "--overlap", "1", cwd=tmp_path), "--overlap")
    assert_user_error(cli("label", "--model", str(tmp_path / "none"), "--unlabelled", pool, cwd=tmp_path), "none")
    assert_user_error(cli("label", *args, "--text-col", "body", cwd=tmp_path), "body")
    foreign = tmp_path / "foreign.csv"
    pd.DataFrame({"text": ["好"], "label": ["positive"]}).to_csv(foreign, index=False)
    assert_user_error(cli("label", *args, "--output", str(foreign), cwd=tmp_path), "'positive'", "not the model's")
    assert_user_error(cli("label", *args, "--finetune-args=--from other", cwd=tmp_path), "--from", "set by label")
    assert_user_error(cli("label", *args, "--finetune-args=--epochs 0", cwd=tmp_path), "--epochs")
    assert_user_error(cli("label", *args, "--finetune-args=--no-such-flag", cwd=tmp_path))
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"review": ["😀", "！！"]}).to_csv(empty, index=False)
    assert_user_error(cli("label", *args[:2], "--unlabelled", str(empty), "--text-col", "review", cwd=tmp_path),
                      "no text to label")
    assert not (tmp_path / "labels.csv").exists() and not (tmp_path / "runs").exists()


# --- the page in a real browser ---------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


def label_server(tiny, cwd: Path, port: int) -> Server:
    """`python -m sentiment_tf.label` in its own process (killed for real in the test)."""
    return Server("--model", str(tiny.model), "--unlabelled", str(tiny.pool), "--text-col", "review", "--output",
                  "labels.csv", "--budget", "20", "--adapt-output", "adapted", "--finetune-args=--epochs 1 --errors 0",
                  cwd=cwd, module="label", port=port)


def test_the_page_in_chromium_keyboard_undo_restart_two_browsers_and_adapt(tiny, tmp_path: Path):
    import os

    from tests.helpers import free_port

    if not CHROMIUM.exists() or not _has_playwright():
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium and playwright (.ci/run installs both)")
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium) and playwright (requirements-dev.txt)")
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    server = label_server(tiny, tmp_path, port)
    labelled: list[str] = []

    def label_with_keys(page, n: int) -> None:
        for _ in range(n):
            text = page.locator("#text").inner_text()
            assert text not in labelled, "a labelled text was shown again"
            position = page.locator("#position").inner_text()
            key = ["正面", "负面"].index(tiny.gold[text]) + 1
            page.keyboard.press(str(key))
            expect(page.locator("#position")).not_to_have_text(position)
            labelled.append(text)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(server.url + "/")
            expect(page.locator("#position")).to_contain_text("text #")
            expect(page.locator("#why span.tok").first).to_be_visible(timeout=30000)  # the attributions arrive
            annotator = page.locator("#annotator").input_value()
            label_with_keys(page, 12)
            page.keyboard.press("z")  # undo: the last text is back, its row gone
            expect(page.locator("#text")).to_have_text(labelled[-1])
            assert len(pd.read_csv(tmp_path / "labels.csv")) == 11
            labelled.pop()
            expect(page.locator("#progresstext")).to_contain_text("11 / 20 labelled")

            server.kill()  # mid-way, for real; labels.csv is all there is
            assert pd.read_csv(tmp_path / "labels.csv")["text"].tolist() == labelled
            server = label_server(tiny, tmp_path, port)
            page.reload()
            expect(page.locator("#progresstext")).to_contain_text("11 / 20 labelled")
            label_with_keys(page, 9)

            # a second browser (its own session) never gets the text the first one shows
            other = browser.new_context().new_page()
            other.goto(server.url + "/")
            expect(other.locator("#position")).to_contain_text("text #")
            assert other.locator("#text").inner_text() != page.locator("#text").inner_text()
            assert other.locator("#text").inner_text() not in labelled

            # bad input to the page's API, from the browser: a 4xx with {"error": ...}
            status, body = page.evaluate("""async () => {
                const r = await fetch('/api/label', {method: 'POST', body: '{"session": 1'});
                return [r.status, await r.json()]; }""")
            assert status == 400 and "malformed JSON" in body["error"]

            page.keyboard.press("a")  # adapt now, then the before/after report and the adapted model in charge
            expect(page.locator("#adaptstate")).to_contain_text("done", timeout=180000)
            expect(page.locator("#adaptlog")).to_contain_text("before (source model)")
            assert "/" + tmp_path.name not in page.locator("#adaptlog").inner_text()  # no server paths on the page
            expect(page.locator("#model")).to_contain_text("adapted/1")
            expect(page.locator("#gain")).to_contain_text("after 20 labels")
            page.screenshot(path=str(tmp_path / "label.png"), full_page=True)
        finally:
            browser.close()
            server.kill()
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert labels["text"].tolist() == labelled and len(labels) == 20
    assert (labels["annotator"] == annotator).all() and (labels["label"] == labels["text"].map(tiny.gold)).all()
    assert (tmp_path / "adapted" / "1").is_dir()
    # a restarted page still knows what the adaptation gained
    from sentiment_tf.labeling.adapt_job import AdaptJob

    job = AdaptJob([], tmp_path / "runs", lambda version: None)
    assert job.restore(tmp_path / "labels.csv") == tmp_path / "adapted" / "1"  # it ranks again after a restart
    assert [(h["labels"], h["version"]) for h in job.history] == [(20, "1")]


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True
