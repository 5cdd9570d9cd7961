"""Pretraining: People's Daily tag stripping, vocabulary, masked-LM loss, the checkpoint it writes
(fine-tunable with --pretrained), continued pretraining, resume and bad input. Models are tiny."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

tf = pytest.importorskip("tensorflow")

TINY = ["--hidden-size", "32", "--layers", "2", "--heads", "2", "--intermediate-size", "64", "--max-length", "48",
        "--batch-size", "32", "--vocab-size", "800", "--min-frequency", "1", "--learning-rate", "2e-3"]
PD_LINES = ["迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w  一九九八年/t  新年/t  讲话/n",
            "[中央/n  人民/n  广播/vn  电台/n]nt  记者/n  报道/v  ，/w  Windows/nx  95/m  版本/n  。/w"]


def test_strip_tags_reads_peoples_daily_and_leaves_plain_text_alone():
    from sentiment_tf.data.splits import strip_tags

    assert strip_tags(PD_LINES[0]) == "迈向充满希望的新世纪——一九九八年新年讲话"
    assert strip_tags(PD_LINES[1]) == "中央人民广播电台记者报道，Windows 95版本。"
    assert strip_tags("价格/质量 都不错，推荐") == "价格/质量 都不错，推荐"
    assert strip_tags("") == ""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(PD_LINES * 3 + reviews["text"].tolist()[:600]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, corpus: Path) -> Path:
    work = tmp_path_factory.mktemp("pretrain")
    proc = cli("pretrain", "--corpus", str(corpus), "--output", str(work / "ckpt"), "--epochs", "3",
               "--holdout", "0.1", "--run-dir", str(work / "run"), *TINY, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out masked-LM loss" in proc.stdout
    return work / "ckpt"


def test_pretraining_writes_a_checkpoint_that_learned(pretrained: Path):
    summary = json.loads((pretrained / "pretrain_summary.json").read_text(encoding="utf-8"))
    assert summary["held_out_after"]["loss"] < summary["held_out_before"]["loss"] - 0.5
    assert {"config.json", "tf_model.h5", "vocab.txt", "tokenizer_config.json"} <= {p.name for p in pretrained.iterdir()}
    assert not [p for p in pretrained.parent.iterdir() if p.name.startswith(".ckpt")]  # no temp dir left
    vocab = (pretrained / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    cjk = [t for t in vocab if any("\u4e00" <= c <= "\u9fff" for c in t)]
    assert "好" in cjk and all(len(t.removeprefix("##")) == 1 for t in cjk)  # one CJK character per token


def test_checkpoint_fine_tunes_with_its_pretrained_encoder(pretrained: Path):
    from transformers import TFBertForMaskedLM

    from sentiment_tf.models.bert.checkpoints import load_pretrained

    clf, tokenizer = load_pretrained(str(pretrained), ["负面", "正面"])
    mlm = TFBertForMaskedLM.from_pretrained(str(pretrained))
    enc = tokenizer(["房间很干净", "太差了"], padding=True, return_tensors="np")
    hidden_clf = clf.bert(**enc, training=False).last_hidden_state.numpy()
    hidden_mlm = mlm.bert(**enc, training=False).last_hidden_state.numpy()
    np.testing.assert_allclose(hidden_clf, hidden_mlm, atol=1e-5)
    assert clf.config.id2label == {0: "负面", 1: "正面"}


def test_masked_positions_loss_equals_hugging_face_loss(pretrained: Path):
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling, TFBertForMaskedLM

    from sentiment_tf.models.bert.pretraining import masked_positions_trainer

    model = TFBertForMaskedLM.from_pretrained(str(pretrained))
    tok = BertTokenizerFast.from_pretrained(str(pretrained))
    batch = DataCollatorForLanguageModeling(tok, mlm_probability=0.3, return_tensors="np", seed=1)(
        [{"input_ids": ids} for ids in tok(["房间很干净，服务也好", "太差了不会再来", "一般般"])["input_ids"]])
    ours = float(masked_positions_trainer(model)(dict(batch), training=False))
    reference = model(**batch, training=False).loss.numpy()
    assert ours == pytest.approx(float(np.mean(reference)), rel=1e-5)


def test_continued_pretraining_keeps_the_vocabulary(pretrained: Path, tmp_path: Path, reviews: pd.DataFrame):
    domain = tmp_path / "hotel.csv"
    pd.DataFrame({"review": reviews["text"].tolist()[600:900]}).to_csv(domain, index=False)
    proc = cli("pretrain", "--from", str(pretrained), "--corpus", str(domain), "--text-col", "review",
               "--output", str(tmp_path / "adapted"), "--epochs", "1", "--batch-size", "32",
               "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "adapted" / "vocab.txt").read_text() == (pretrained / "vocab.txt").read_text()
    old = json.loads((pretrained / "config.json").read_text())
    new = json.loads((tmp_path / "adapted" / "config.json").read_text())
    assert (new["hidden_size"], new["num_hidden_layers"]) == (old["hidden_size"], old["num_hidden_layers"])


def test_interrupted_pretraining_resumes(corpus: Path, tmp_path: Path, monkeypatch):
    import tf_keras

    from sentiment_tf import pretrain

    class Crash(Exception):
        pass

    class CrashAfterFirstEpoch(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Crash("power cut")

    monkeypatch.chdir(tmp_path)
    original_fit = None

    def crashing_fit(self, *args, callbacks=None, **kwargs):
        return original_fit(self, *args, callbacks=[*callbacks, CrashAfterFirstEpoch()], **kwargs)

    original_fit = tf_keras.Model.fit
    monkeypatch.setattr(tf_keras.Model, "fit", crashing_fit)
    run, out = tmp_path / "run", tmp_path / "ckpt"
    with pytest.raises(Crash):
        pretrain.main(["--corpus", str(corpus), "--output", str(out), "--epochs", "2", "--run-dir", str(run),
                       "--max-texts", "200", *TINY])
    assert (run / "backup").is_dir() and not out.exists()
    monkeypatch.setattr(tf_keras.Model, "fit", original_fit)
    assert pretrain.main(["--resume", str(run)]) == 0
    summary = json.loads((out / "pretrain_summary.json").read_text(encoding="utf-8"))
    assert len(summary["history"]["loss"]) == 1  # epoch 2 only: epoch 1 came from the backup


@pytest.mark.parametrize("args, fragments", [
    (["--corpus", "missing.txt", "--output", "o"], ["missing.txt", "not found"]),
    (["--corpus", "{corpus}", "--output", "o", "--hidden-size", "30", "--heads", "4"], ["--heads 4", "divide"]),
    (["--corpus", "{empty}", "--output", "o"], ["no text"]),
    (["--corpus", "{corpus}", "--output", "{full}"], ["not empty", "never overwritten"]),
    (["--corpus", "{csv}", "--output", "o"], ["column 'text' not found", "review"]),
])
def test_bad_input_is_one_line_error(args, fragments, tmp_path: Path, corpus: Path):
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    pd.DataFrame({"review": ["好"]}).to_csv(tmp_path / "c.csv", index=False)
    args = [a.format(corpus=corpus, empty=tmp_path / "empty.txt", full=tmp_path / "full", csv=tmp_path / "c.csv")
            for a in args]
    proc = cli("pretrain", *args, cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists()
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
