"""Integrated-gradient explanations: completeness, the token a model keys on, the command's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

WORDS = ["今天", "我们", "这个", "东西", "快递", "包装", "颜色", "价格", "时间", "朋友", "商品", "质量"]
KEY = "喜欢"


def keyed_texts(n: int, seed: int = 0) -> pd.DataFrame:
    """Label 正面 exactly when the text contains KEY; everything else is shared noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = list(rng.choice(WORDS, 6))
        positive = i % 2 == 0
        if positive:
            words[rng.integers(0, 6)] = KEY
        rows.append({"text": "，".join(words), "label": "正面" if positive else "负面"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def keyed_model(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("keyed")
    keyed_texts(600).to_csv(work / "keyed.csv", index=False)
    proc = cli("train", "--data", "keyed.csv", "--epochs", "6", "--embedding-dim", "16", "--rnn-units", "8",
               "--min-freq", "1", "--learning-rate", "1e-2", "--output", "model", "--run-dir", "run", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((work / "run" / "report.json").read_text(encoding="utf-8"))["accuracy"] > 0.95
    return work / "model"


def test_train_writes_the_most_confidently_wrong_texts_explained(keyed_model: Path):
    page = (keyed_model.parent / "run" / "errors.html").read_text(encoding="utf-8")
    report = json.loads((keyed_model.parent / "run" / "report.json").read_text(encoding="utf-8"))
    wrong = sum(report["confusion_matrix"][i][j] for i in range(2) for j in range(2) if i != j)
    assert page.count("class=item") == min(wrong, 20) and page.count("true label:") == min(wrong, 20)


def test_the_token_the_model_keys_on_gets_the_largest_attribution(keyed_model: Path):
    from sentiment_tf.export.versions import read_metadata, resolve_version_dir
    from sentiment_tf.models import family

    version = resolve_version_dir(keyed_model)
    trained = family.load_trained(version, read_metadata(version))
    texts = keyed_texts(40, seed=1)
    positives = texts[texts.label == "正面"]["text"].tolist()
    for e in trained.explain(positives, steps=64):
        assert e.label == "正面"
        assert e.tokens[int(np.argmax(e.scores))] == KEY, list(zip(e.tokens, e.scores))
        # completeness: the scores add up to logit(text) − logit(baseline)
        assert e.completeness_error <= 0.01 * abs(e.logit_delta) + 1e-3, (e.completeness_error, e.logit_delta)
    # Explaining the other label turns KEY's score negative: it pushes away from 负面.
    for e in trained.explain(positives[:5], steps=64, targets=[trained.labels.index("负面")] * 5):
        assert e.label == "负面" and e.scores[e.tokens.index(KEY)] < 0


def test_explain_command_prints_and_writes_html_and_png(keyed_model: Path, tmp_path: Path):
    text = "，".join(["快递", KEY, "价格"])
    proc = cli("explain", "--model", str(keyed_model), text, "--output", str(tmp_path / "why.html"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "正面  p = " in proc.stdout and f"{KEY} +" in proc.stdout  # no tty: the top tokens with scores
    page = (tmp_path / "why.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and f">{KEY}</span>" in page and "<script" not in page
    pd.DataFrame({"review": [text, "今天，包装"]}).to_csv(tmp_path / "in.csv", index=False)
    proc = cli("explain", "--model", str(keyed_model), "--input", str(tmp_path / "in.csv"), "--text-col", "review",
               "--output", str(tmp_path / "why.png"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "why.png").stat().st_size > 3000 and proc.stdout.count("p = ") == 2


NOTHING = ["", "😀😀", "！！！", "   "]


def test_a_text_with_nothing_to_classify_gets_no_label_in_every_command(keyed_model: Path, tmp_path: Path):
    """One rule (serve's /predict, batch_predict and the client have theirs in their own tests): no
    label, and the reason, instead of a confident-looking 负面 0.51."""
    from sentiment_tf.serving.predictor import Predictor

    text = "，".join(["快递", KEY, "价格"])
    out = Predictor.load(keyed_model).predict([*NOTHING, text])
    assert out.labels[:4] == [None] * 4 and out.labels[4] == "正面" and out.nothing.tolist() == [True] * 4 + [False]
    assert out.reason(0) == "no letters, digits or CJK characters to classify" and out.reason(4) is None

    proc = cli("predict", "--model", str(keyed_model), "😀😀", text, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == "-\t-\t😀😀\t(no letters, digits or CJK characters to classify)"
    assert proc.stdout.splitlines()[1].startswith("正面\t")

    pd.DataFrame({"review": [text, None, "😀😀"]}).to_csv(tmp_path / "in.csv", index=False)  # an empty cell
    proc = cli("predict", "--model", str(keyed_model), "--input", "in.csv", "--text-col", "review", "--output",
               "out.csv", cwd=tmp_path)
    assert proc.returncode == 0 and "2 text(s) had nothing to classify" in proc.stderr, proc.stderr[-2000:]
    frame = pd.read_csv(tmp_path / "out.csv")
    assert frame["pred_label"].tolist()[0] == "正面" and frame["pred_label"].iloc[1:].isna().all()
    assert frame["pred_prob_正面"].iloc[1:].isna().all() and frame["pred_prob_正面"].iloc[0] > 0.5

    proc = cli("explain", "--model", str(keyed_model), "--input", "in.csv", "--text-col", "review", "--output",
               "why.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("no label: no letters, digits or CJK characters to classify") == 2
    page = (tmp_path / "why.html").read_text(encoding="utf-8")
    assert page.count("no label: no letters") == 2 and ">nan<" not in page and "(empty)" in page


def test_explain_bad_input_is_one_line_error(keyed_model: Path, tmp_path: Path):
    from sentiment_tf import explain
    from sentiment_tf.core.errors import UserError

    assert_user_error(cli("explain", "--model", str(keyed_model), cwd=tmp_path), "give texts to explain")
    for args, message in ((["好", "--label", "中性"], "--label 中性: not a label of this model (正面, 负面)"),
                          (["好", "--output", str(tmp_path / "x.pdf")], "must end in .html or .png"),
                          (["好", "--steps", "0"], "--steps and --max-texts must be at least 1")):
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            explain.main(["--model", str(keyed_model), *args])
    with pytest.raises(UserError, match="not found"):
        explain.main(["--model", str(tmp_path / "missing"), "好"])


def test_bert_explanations_merge_word_pieces_and_are_complete(tiny_bert: Path):
    """On the tiny BERT (random head), each reader token is a character or a whole Latin word, the
    tokens spell the text, and the scores still add up to the logit difference."""
    from transformers import BertTokenizerFast, TFBertForSequenceClassification

    from sentiment_tf.models.bert.classifier import TrainedBert
    from sentiment_tf.models.bert.preprocessor import Preprocessor

    tok = BertTokenizerFast.from_pretrained(str(tiny_bert))
    model = TFBertForSequenceClassification.from_pretrained(str(tiny_bert))
    trained = TrainedBert(model, Preprocessor(tok, 64), ["正面", "负面"], {})
    text = "这个手机iphone很好用"
    [e] = trained.explain([text], steps=64)
    assert "".join(e.tokens) == text
    assert len(tok.tokenize("iphone")) > 1 and "iphone" in e.tokens  # its pieces merged back into one word
    assert e.completeness_error <= 0.01 * abs(e.logit_delta) + 1e-3
