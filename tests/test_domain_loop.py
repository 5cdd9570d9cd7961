"""The domain loop: the export's `embed` signature and data profile, `select` (what to label next)
and `monitor` (has the data drifted), as a user runs them."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_MODEL_ARGS, assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

tf = pytest.importorskip("tensorflow")

ENGLISH = ["The hotel room was clean and the staff were friendly.", "Terrible service, I will never come back!",
           "Battery life is great but the screen is dim.", "Shipping took two weeks and the box was damaged.",
           "Great value for money, would buy again."]


@pytest.fixture(scope="module")
def loop(tmp_path_factory, reviews: pd.DataFrame) -> types.SimpleNamespace:
    """An LSTM trained on 1,000 random reviews; 300 other reviews as new in-distribution data."""
    from sentiment_tf import train

    work = tmp_path_factory.mktemp("loop")
    shuffled = reviews.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled.head(1000).to_csv(work / "train.csv", index=False)
    fresh = shuffled.iloc[1000:1300]
    fresh.rename(columns={"text": "review"}).assign(shop="s1").to_csv(work / "fresh.csv", index=False)
    assert train.main(["--data", str(work / "train.csv"), "--output", str(work / "model"), "--run-dir",
                       str(work / "run"), *TINY_MODEL_ARGS, "--epochs", "3"]) == 0
    return types.SimpleNamespace(work=work, model=work / "model", version=work / "model" / "1", fresh=fresh)


# --- The export: embed signature and profile ----------------------------------------------------


def test_embed_signature_is_the_heads_input_and_gives_the_served_probabilities(loop):
    import keras

    loaded = tf.saved_model.load(str(loop.version))
    texts = ["酒店很干净", "太差了", "", "从来没见过的词"]
    embedded = loaded.signatures["embed"](text=tf.constant(texts))
    served = loaded.signatures["serving_default"](text=tf.constant(texts))["probabilities"].numpy()
    np.testing.assert_allclose(embedded["probabilities"].numpy(), served, atol=1e-6)
    model = keras.saving.load_model(loop.version / "assets.extra" / "keras_model.keras")
    features = keras.Model(model.inputs, model.get_layer("probabilities").input)
    from sentiment_tf.serving.predictor import Predictor

    lookup = Predictor.load(loop.version)  # the export's own vocabulary, via its tokens() view
    assert lookup.tokens(["酒店 很 干净"], prepared=True).tokens == [["酒店", "很", "干净"]]
    from sentiment_tf.models.lstm.classifier import load_trained

    trained = load_trained(loop.version, lookup.metadata)
    ids = trained.preprocessor.ids(tf.constant(trained.preprocessor.segment(texts))).to_tensor()
    np.testing.assert_allclose(embedded["embedding"].numpy(), features(ids).numpy(), atol=1e-5)


def test_export_profile_is_what_the_monitor_measures_on_the_test_split(loop):
    """The stored profile equals the monitor's own measurement of the same texts through the export,
    so in-distribution data compares with it like for like."""
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import load_splits
    from sentiment_tf.evaluation import drift
    from sentiment_tf.serving.predictor import Predictor

    meta = json.loads((loop.version / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))
    profile = meta["profile"]
    test = load_splits(DataConfig(data=str(loop.work / "train.csv"))).test["text"].tolist()
    predictor = Predictor.load(loop.version)
    sample = drift.Sample.measure(test, predictor.tokens(test), predictor.predict(test).probabilities,
                                  predictor.label_names)
    again = sample.profile()
    assert profile["texts"] == len(test) == again["texts"]
    assert profile["oov_rate"] == pytest.approx(again["oov_rate"], abs=1e-6) and 0 < profile["oov_rate"] < 0.5
    assert profile["length"] == again["length"]
    np.testing.assert_allclose(profile["confidence"]["quantiles"], again["confidence"]["quantiles"], atol=1e-4)
    assert profile["labels"] == pytest.approx(again["labels"], abs=1e-6)
    assert profile["top_tokens"][:10] == again["top_tokens"][:10]
    assert len(json.dumps(profile)) < 8000  # small enough for every export
    assert "OOV rate" in (loop.version / "assets.extra" / "MODEL_CARD.md").read_text(encoding="utf-8")


# --- select -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unlabelled(loop) -> Path:
    """The fresh reviews without labels, with an emoji-only row, a duplicate (after cleaning) and two
    rows already labelled."""
    frame = loop.fresh.rename(columns={"text": "review"})[["review"]].assign(shop="s1", label="")
    extra = pd.DataFrame({"review": ["😀😀！", "ＡＢＣ" + frame["review"].iloc[0], frame["review"].iloc[0]],
                          "shop": "s2", "label": ""})
    frame = pd.concat([frame, extra], ignore_index=True)
    frame.loc[[1, 2], "label"] = "正面"
    path = loop.work / "unlabelled.csv"
    frame.to_csv(path, index=False)
    frame.iloc[3:13][["review"]].to_csv(loop.work / "done.csv", index=False)
    return path


def _select(loop, unlabelled: Path, strategy: str, budget: int, out: str, *extra: str) -> pd.DataFrame:
    from sentiment_tf import select

    assert select.main(["--model", str(loop.model), "--unlabelled", str(unlabelled), "--text-col", "review",
                        "--budget", str(budget), "--strategy", strategy, "--exclude", str(loop.work / "done.csv"),
                        "--output", str(loop.work / out), *extra]) == 0
    return pd.read_csv(loop.work / out, keep_default_na=False)


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "diverse", "hybrid"])
def test_select_chooses_budget_new_distinct_candidates_deterministically(loop, unlabelled, strategy):
    from sentiment_tf.data.cleaning import clean_text

    chosen = _select(loop, unlabelled, strategy, 40, f"{strategy}.csv")
    again = _select(loop, unlabelled, strategy, 40, f"{strategy}-again.csv")
    pd.testing.assert_frame_equal(chosen, again)
    assert list(chosen.columns) == ["review", "shop", "label", "rank", "uncertainty"]
    assert len(chosen) == 40 and chosen["rank"].tolist() == list(range(1, 41))
    assert (chosen["label"] == "").all()
    frame = pd.read_csv(unlabelled, keep_default_na=False)
    cleaned = chosen["review"].map(clean_text)
    assert cleaned.is_unique  # the ＡＢＣ-prefixed copy cleans to a different text; the exact copy is a duplicate
    done = set(pd.read_csv(loop.work / "done.csv")["review"].map(clean_text))
    assert not set(cleaned) & done
    assert not set(chosen["review"]) & set(frame.loc[[1, 2], "review"])  # already labelled
    assert "😀😀！" not in set(chosen["review"])
    other = _select(loop, unlabelled, strategy, 40, f"{strategy}-seed7.csv", "--seed", "7")
    assert (strategy == "uncertainty") == other.equals(chosen)  # only uncertainty ignores the seed (no ties here)


def test_select_samples_a_large_pool_and_reads_it_in_chunks(loop, unlabelled):
    """--max-candidates: a seeded uniform sample of the candidates (reservoir sampling while reading
    --chunk-size rows at a time) — the same sample whatever the chunk size."""
    a = _select(loop, unlabelled, "hybrid", 20, "cap-a.csv", "--max-candidates", "100", "--chunk-size", "7")
    b = _select(loop, unlabelled, "hybrid", 20, "cap-b.csv", "--max-candidates", "100", "--chunk-size", "5000")
    pd.testing.assert_frame_equal(a, b)
    whole = _select(loop, unlabelled, "hybrid", 20, "cap-c.csv", "--chunk-size", "7")
    pd.testing.assert_frame_equal(whole, _select(loop, unlabelled, "hybrid", 20, "hybrid-20.csv"))
    from sentiment_tf import select
    from sentiment_tf.core.errors import UserError

    with pytest.raises(UserError, match="more than the 100 candidate.*--max-candidates"):
        select.main(["--model", str(loop.model), "--unlabelled", str(unlabelled), "--text-col", "review",
                     "--budget", "150", "--max-candidates", "100", "--output", str(loop.work / "cap-x.csv")])


def test_uncertainty_chooses_the_least_certain_and_hybrid_prefers_them(loop, unlabelled):
    from sentiment_tf.evaluation import selection
    from sentiment_tf.serving.predictor import Predictor

    chosen = _select(loop, unlabelled, "uncertainty", 30, "u30.csv")
    frame = pd.read_csv(unlabelled, keep_default_na=False)
    probs = Predictor.load(loop.model).predict(frame["review"].tolist()).probabilities
    scores = pd.Series(selection.uncertainty(probs), index=frame["review"])
    assert chosen["uncertainty"].is_monotonic_decreasing
    np.testing.assert_allclose(chosen["uncertainty"], scores[chosen["review"]].to_numpy(), atol=1e-5)
    rest = scores.drop(index=list(chosen["review"]) + frame.loc[[1, 2], "review"].tolist(), errors="ignore")
    rest = rest[~rest.index.isin(pd.read_csv(loop.work / "done.csv")["review"])]
    assert chosen["uncertainty"].min() >= rest.max() - 1e-6
    hybrid, rand = _select(loop, unlabelled, "hybrid", 30, "h30.csv"), _select(loop, unlabelled, "random", 30, "r30.csv")
    assert hybrid["uncertainty"].mean() > rand["uncertainty"].mean()


def test_selected_file_is_read_back_by_finetune(loop, unlabelled):
    """Fill in some labels, leave the rest empty: finetune trains on the filled rows and counts the others."""
    from sentiment_tf import finetune

    chosen = _select(loop, unlabelled, "hybrid", 120, "to_label.csv")
    gold = dict(zip(loop.fresh["text"], loop.fresh["label"]))
    chosen["label"] = [gold.get(t, "") for t in chosen["review"]]
    chosen.loc[chosen.index[-20:], "label"] = ""
    chosen.to_csv(loop.work / "labelled.csv", index=False)
    assert finetune.main(["--from", str(loop.model), "--data", str(loop.work / "labelled.csv"), "--text-col", "review",
                          "--output", str(loop.work / "adapted"), "--run-dir", str(loop.work / "run_ft"),
                          "--epochs", "1", "--errors", "0"]) == 0
    stats = json.loads((loop.work / "run_ft" / "data_stats.json").read_text(encoding="utf-8"))
    assert stats["train_file"]["rows_read"] == 120 and stats["train_file"]["missing_label"] == 20
    assert (loop.work / "adapted" / "1" / "assets.extra" / "sentiment_tf.json").is_file()


def test_select_bad_input_is_one_line_error(loop, unlabelled):
    from sentiment_tf import select
    from sentiment_tf.core.errors import UserError

    proc = cli("select", "--model", str(loop.model), "--unlabelled", str(unlabelled), "--text-col", "review",
               "--budget", "5000", "--output", "x.csv", cwd=loop.work)
    assert_user_error(proc, "--budget 5000", "candidate texts")
    base = ["--model", str(loop.model), "--unlabelled", str(unlabelled), "--output", str(loop.work / "x.csv")]
    for argv, message in ((base, "column 'text' not found in --unlabelled .*review"),
                          (base[:1] + [str(loop.work)] + base[2:], "not a sentiment_tf model"),
                          (base + ["--text-col", "review", "--budget", "0"], "--budget must be at least 1"),
                          (base + ["--text-col", "review", "--exclude", "nope.csv"], "not found: nope.csv")):
        with pytest.raises(UserError, match=message):
            select.main(argv)
    assert not (loop.work / "x.csv").exists()


def test_old_export_without_embed_is_a_clear_error(loop):
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.serving.predictor import Predictor

    predictor = Predictor.load(loop.model)
    predictor._loaded = types.SimpleNamespace(signatures={"serving_default": predictor._signature})
    with pytest.raises(UserError, match="no 'embed' signature.*--strategy random or uncertainty"):
        predictor.embed(["好"])


def test_strategies_on_known_geometry():
    """Diverse takes one text per tight cluster; hybrid takes at most one of the confidently predicted
    texts (their gradient embeddings are all zero), uncertainty never does."""
    from sentiment_tf.evaluation import selection

    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    emb = np.concatenate([c + 0.01 * rng.normal(size=(50, 3)) for c in centres]).astype(np.float32)
    probs = np.tile([[0.6, 0.4]], (150, 1)).astype(np.float32)
    probs[:75] = [1.0, 0.0]
    picked = selection.choose("diverse", probs, emb, 3, seed=1)
    assert sorted(i // 50 for i in picked) == [0, 1, 2]
    assert (selection.choose("hybrid", probs, emb, 20, seed=1) < 75).sum() <= 1
    assert (selection.choose("uncertainty", probs, None, 20, seed=1) >= 75).all()
    for strategy in selection.STRATEGIES:  # a smaller budget's choice is a prefix of a larger one's
        np.testing.assert_array_equal(selection.choose(strategy, probs, emb, 10, 5),
                                      selection.choose(strategy, probs, emb, 30, 5)[:10])


# --- monitor ------------------------------------------------------------------------------------


def test_monitor_in_distribution_is_0_english_and_news_are_1(loop, neutral_texts):
    pd.DataFrame({"text": ENGLISH * 12}).to_csv(loop.work / "english.csv", index=False)
    (loop.work / "news.txt").write_text("\n".join(neutral_texts[:200]), encoding="utf-8")
    proc = cli("monitor", "--model", str(loop.model), "--data", "fresh.csv", "--text-col", "review", "--output", "m0",
               cwd=loop.work)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "no drift" in proc.stdout and "Traceback" not in proc.stderr
    report = json.loads((loop.work / "m0" / "drift.json").read_text(encoding="utf-8"))
    assert report["drift"] is False and report["texts"] == 300
    from sentiment_tf import monitor

    assert monitor.main(["--model", str(loop.model), "--data", str(loop.work / "fresh.csv"), "--text-col", "review",
                         "--chunk-size", "7", "--output", str(loop.work / "m0-chunks")]) == 0
    chunked = json.loads((loop.work / "m0-chunks" / "drift.json").read_text(encoding="utf-8"))
    assert [c["value"] for c in chunked["checks"]] == pytest.approx([c["value"] for c in report["checks"]], abs=1e-6)
    assert {c["check"] for c in report["checks"]} >= {"oov rate", "length (tokens)", "predicted labels"}
    assert (loop.work / "m0" / "drift.png").stat().st_size > 10_000
    for data, col in (("english.csv", "text"), ("news.txt", "text")):
        proc = cli("monitor", "--model", str(loop.model), "--data", data, "--text-col", col, "--output", f"m-{data}",
                   cwd=loop.work)
        assert proc.returncode == 1, (data, proc.stdout, proc.stderr[-2000:])
        report = json.loads((loop.work / f"m-{data}" / "drift.json").read_text(encoding="utf-8"))
        assert report["drift"] is True
        flagged = {c["check"] for c in report["checks"] if c["drift"]}
        assert "oov rate" in flagged, (data, proc.stdout)


def test_monitor_against_a_reference_file(loop):
    from sentiment_tf import monitor

    assert monitor.main(["--model", str(loop.model), "--data", str(loop.work / "fresh.csv"), "--text-col", "review",
                         "--reference", str(loop.work / "train.csv"), "--reference-text-col", "text",
                         "--output", str(loop.work / "m-ref")]) == 0
    report = json.loads((loop.work / "m-ref" / "drift.json").read_text(encoding="utf-8"))
    assert report["reference_texts"] == 1000
    checks = {c["check"]: c for c in report["checks"]}
    # the model's own training data: its OOV rate is optimistic (the vocabulary came from it), so not judged
    assert checks["oov rate"]["threshold"] is None and checks["oov rate"]["value"] > 0.05
    assert checks["length (tokens)"]["threshold"] == 0.2 and not checks["length (tokens)"]["drift"]
    fresh_copy = loop.work / "fresh_reference.csv"
    fresh_copy.write_bytes((loop.work / "fresh.csv").read_bytes())
    assert monitor.main(["--model", str(loop.model), "--data", str(loop.work / "fresh.csv"), "--text-col", "review",
                         "--reference", str(fresh_copy), "--output", str(loop.work / "m-ref2")]) == 0
    report = json.loads((loop.work / "m-ref2" / "drift.json").read_text(encoding="utf-8"))
    assert all(c["value"] == pytest.approx(0, abs=1e-9) for c in report["checks"] if c["threshold"] is not None)


def test_monitor_bad_input_exits_2(loop):
    import shutil

    from sentiment_tf import monitor
    from sentiment_tf.core.errors import UserError

    proc = cli("monitor", "--model", str(loop.model), "--data", "missing.csv", "--output", "mx", cwd=loop.work)
    assert_user_error(proc, "--data file not found: missing.csv")
    pd.DataFrame({"text": ["好"] * 5}).to_csv(loop.work / "five.csv", index=False)
    damaged = loop.work / "damaged"
    shutil.copytree(loop.version, damaged / "1")
    meta_path = damaged / "1" / "assets.extra" / "sentiment_tf.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["profile"]["length"]["shares"] = [1.0]
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    fresh = ["--data", str(loop.work / "fresh.csv"), "--text-col", "review", "--output", str(loop.work / "mx")]
    for argv, message in ((["--model", str(loop.model), "--data", str(loop.work / "five.csv"), "--output", str(loop.work / "mx")],
                           "has 5 texts.*at least 20"),
                          (["--model", str(loop.model), *fresh, "--psi", "0"], "--psi must be above 0"),
                          (["--model", str(damaged), *fresh], "data profile is damaged.*--reference")):
        with pytest.raises(UserError, match=message):
            monitor.main(argv)
    meta.pop("profile")
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match="records no data profile.*--reference"):
        monitor.main(["--model", str(damaged), *fresh])
    assert not (loop.work / "mx").exists()


def test_psi_and_its_significance():
    from sentiment_tf.evaluation import drift

    rng = np.random.default_rng(0)
    ref = drift.distribution(rng.normal(size=2000))
    same, shifted = rng.normal(size=2000), rng.normal(0.5, 1, size=2000)
    psi_same = drift.psi(ref["shares"], drift.shares(same, ref["edges"]))
    psi_shift = drift.psi(ref["shares"], drift.shares(shifted, ref["edges"]))
    assert psi_same < 0.02 < 0.2 < psi_shift
    assert drift.psi_p_value(psi_same, 10, 2000, 2000) > 0.01 > drift.psi_p_value(psi_shift, 10, 2000, 2000)
    assert drift.psi_p_value(0.3, 10, 30, 30) > 0.01  # 30 texts a side: a PSI of 0.3 is noise
    assert drift.ks(ref, same) < 0.05 < 0.15 < drift.ks(ref, shifted)
