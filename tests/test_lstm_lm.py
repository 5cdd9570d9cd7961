"""LSTM language-model pretraining (pretrain --model lstm) and classifiers that start from it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from sentiment_tf import pretrain
from sentiment_tf.core.config import ModelConfig
from sentiment_tf.models import training
from sentiment_tf.models.lstm import classifier as lstm
from sentiment_tf.models.lstm import language_model as lstm_lm
from tests.helpers import assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

SMALL = ["--embedding-dim", "8", "--rnn-units", "4", "--sampled", "40", "--max-length", "40", "--learning-rate", "1e-2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(reviews["text"].head(400)), encoding="utf-8")
    return path


def pretrain_lm(corpus: Path, out: Path, *extra: str) -> dict:
    assert pretrain.main(["--model", "lstm", "--corpus", str(corpus), "--output", str(out), "--epochs", "2",
                          "--run-dir", str(out.parent / f"run_{out.name}"), *SMALL, *extra]) == 0
    return json.loads((out / lstm_lm.LM_FILE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lm_dir(corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "lm"
    pretrain_lm(corpus, out)
    return out


def test_pretraining_lowers_held_out_loss_and_writes_a_checkpoint(lm_dir: Path):
    description = json.loads((lm_dir / lstm_lm.LM_FILE).read_text(encoding="utf-8"))
    before, after = description["held_out_before"], description["held_out_after"]
    assert after["loss"] < before["loss"] - 0.5
    # An untrained LM is near uniform: perplexity close to the vocabulary size.
    assert before["perplexity"] == pytest.approx(description["shape"]["vocab_size"], rel=0.15)
    ckpt = lstm_lm.read_checkpoint(lm_dir)
    assert len(ckpt.vocabulary) + 2 == ckpt.shape.vocab_size and ckpt.shape.embedding_dim == 8
    assert description["tokenizer"]["mode"] == "word" and description["tokenizer"]["jieba_version"]
    for name in (lstm_lm.LM_FILE, lstm_lm.WEIGHTS_FILE, lstm_lm.VOCAB_FILE):
        assert stat.S_IMODE((lm_dir / name).stat().st_mode) == 0o644
    assert stat.S_IMODE(lm_dir.stat().st_mode) == 0o755


def test_backward_lm_reads_each_text_reversed():
    model = lstm_lm.build(lstm_lm.LMShape(vocab_size=10, embedding_dim=4, rnn_units=3, dropout=0.0))
    ids = tf.constant([[5, 6, 7, 0], [3, 4, 0, 0]], tf.int64)
    hidden, targets = model.hidden_and_targets(ids, training=False)
    # forward: 5→6, 6→7 | 3→4 ; backward (reversed in place): 7→6, 6→5 | 4→3
    assert targets.numpy().tolist() == [6, 7, 4, 6, 5, 3]
    reversed_row = tf.constant([[7, 6]], tf.int64)  # the backward RNN's inputs for the first text
    expected = model.backward_rnn(model.embedding(reversed_row)).numpy()[0]
    np.testing.assert_allclose(hidden.numpy()[3:5], expected, atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "last"])
def test_the_classifier_starts_from_the_language_models_weights(lm_dir: Path, pooling: str):
    ckpt = lstm_lm.read_checkpoint(lm_dir)
    lm = ckpt.load()
    cfg = ModelConfig(embedding_dim=8, rnn_units=4, pooling=pooling)
    classifier = lstm.build_model(cfg, vocab_size=ckpt.shape.vocab_size + 3, num_classes=2)
    lstm_lm.initialise_classifier(classifier, lm, ckpt.shape.vocab_size)
    table = classifier.get_layer("embedding").get_weights()[0]
    np.testing.assert_array_equal(table[: ckpt.shape.vocab_size], lm.embedding.get_weights()[0])
    # Rows for words the LM never saw start near the mean of its rows.
    mean = lm.embedding.get_weights()[0][2:].mean(axis=0)
    assert np.abs(table[ckpt.shape.vocab_size:] - mean).max() < 3 * table[2:].std()
    encoder = classifier.get_layer(f"bi{cfg.rnn}")
    for got, want in ((encoder.forward_layer, lm.forward_rnn), (encoder.backward_layer, lm.backward_rnn)):
        for a, b in zip(got.get_weights(), want.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_train_from_a_language_model_records_it_and_uses_its_tokenizer(lm_dir: Path, tiny_csv: Path,
                                                                        tmp_path: Path):
    proc = cli("train", "--pretrained", str(lm_dir), "--data", str(tiny_csv), "--text-col", "review",
               "--label-col", "sentiment", "--epochs", "1", "--tokenizer", "char",
               "--output", str(tmp_path / "model"), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    # The LM decides the tokenizer and the encoder's shapes (the char flag gives way to it).
    assert config["TokenizerConfig"]["tokenizer"] == "word"
    assert (config["ModelConfig"]["embedding_dim"], config["ModelConfig"]["rnn_units"]) == (8, 4)
    assert config["ModelConfig"]["pooling"] == "max"  # the default from a language model
    metadata = json.loads((tmp_path / "model" / "1" / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))
    assert metadata["language_model"]["path"] == str(lm_dir)
    vocab = (tmp_path / "model" / "1" / "assets.extra" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab[2: 2 + len(lstm_lm.read_checkpoint(lm_dir).vocabulary)] == lstm_lm.read_checkpoint(lm_dir).vocabulary


def test_continued_pretraining_grows_the_vocabulary_and_keeps_old_rows(lm_dir: Path, tmp_path: Path,
                                                                        neutral_texts: list[str]):
    domain = tmp_path / "domain.txt"
    domain.write_text("\n".join(neutral_texts), encoding="utf-8")
    grown_dir = tmp_path / "grown"
    # --epochs 0 writes the grown model before any training: exactly what training starts from.
    assert pretrain.main(["--model", "lstm", "--from", str(lm_dir), "--corpus", str(domain), "--output",
                          str(grown_dir), "--epochs", "0", "--run-dir", str(tmp_path / "run"), *SMALL]) == 0
    old, grown = lstm_lm.read_checkpoint(lm_dir), lstm_lm.read_checkpoint(grown_dir)
    assert grown.vocabulary[: len(old.vocabulary)] == old.vocabulary and len(grown.vocabulary) > len(old.vocabulary)
    a, b = old.load(), grown.load()
    np.testing.assert_array_equal(b.embedding.get_weights()[0][: old.shape.vocab_size], a.embedding.get_weights()[0])
    np.testing.assert_array_equal(b.softmax_w.numpy()[: old.shape.vocab_size], a.softmax_w.numpy())
    for x, y in zip(b.forward_rnn.get_weights() + b.backward_rnn.get_weights(),
                    a.forward_rnn.get_weights() + a.backward_rnn.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert json.loads((grown_dir / lstm_lm.LM_FILE).read_text(encoding="utf-8"))["from"] == str(lm_dir)


def test_an_interrupted_pretraining_resumes_to_the_uninterrupted_result(corpus: Path, tmp_path: Path):
    whole = pretrain_lm(corpus, tmp_path / "whole")

    def crash_after_first_epoch(epoch: int, logs: dict) -> None:
        raise KeyboardInterrupt

    args = ["--model", "lstm", "--corpus", str(corpus), "--output", str(tmp_path / "cut"), "--epochs", "2",
            "--run-dir", str(tmp_path / "run_cut"), *SMALL]
    with training.observe_epochs(crash_after_first_epoch), pytest.raises(KeyboardInterrupt):
        pretrain.main(args)
    assert not (tmp_path / "cut").exists()
    assert pretrain.main(["--resume", str(tmp_path / "run_cut")]) == 0
    cut = json.loads((tmp_path / "cut" / lstm_lm.LM_FILE).read_text(encoding="utf-8"))
    assert cut["held_out_after"]["loss"] == pytest.approx(whole["held_out_after"]["loss"], abs=1e-5)
    a, b = lstm_lm.read_checkpoint(tmp_path / "whole").load(), lstm_lm.read_checkpoint(tmp_path / "cut").load()
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_a_directory_that_is_not_a_language_model_is_one_line_error(tiny_csv: Path, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    proc = cli("train", "--pretrained", str(tmp_path / "empty"), "--data", str(tiny_csv), "--text-col", "review",
               "--label-col", "sentiment", "--output", str(tmp_path / "model"), "--run-dir", str(tmp_path / "run"),
               cwd=tmp_path)
    assert_user_error(proc, "--pretrained", "not an LSTM language model directory", "pretrain --model lstm")
    assert not (tmp_path / "model").exists() and not (tmp_path / "run").exists()

