"""distill: a teacher export's soft targets over a transfer set train an LSTM student that exports,
predicts and names its teacher; the teacher's scores are cached and resumed; the loss is Hinton's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_MODEL_ARGS, assert_user_error, cli

TEXTS = ["这家酒店很干净，服务也好", "太差了，再也不来了"]


@pytest.fixture(scope="module")
def work(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    """labelled.csv (300 reviews), pool.txt (400 other reviews, 20 of them also labelled) and a teacher."""
    work = tmp_path_factory.mktemp("distill")
    labelled = pd.concat([reviews[reviews.label == name].head(150) for name in ("正面", "负面")])
    labelled.to_csv(work / "labelled.csv", index=False)
    pool = reviews[~reviews.text.isin(labelled.text)].iloc[:400].text.tolist() + labelled.text.head(20).tolist()
    (work / "pool.txt").write_text("\n".join(pool) + "\n", encoding="utf-8")
    proc = cli("train", "--data", "labelled.csv", "--output", "teacher", "--run-dir", "runs/teacher", *TINY_MODEL_ARGS,
               "--learning-rate", "0.02", "--epochs", "3", "--seed", "7", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


@pytest.mark.slow
def test_distill_exports_a_student_that_names_its_teacher(work: Path, monkeypatch):
    proc = cli("distill", "--teacher", "teacher", "--data", "labelled.csv", "--unlabelled", "pool.txt",
               *TINY_MODEL_ARGS, "--learning-rate", "0.02", "--temperature", "2", "--alpha", "0.7", "--augment", "1",
               "--output", "student", "--run-dir", "runs/student", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the student agrees with it on" in proc.stdout
    meta = json.loads((work / "student" / "1" / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))
    d = meta["metrics"]["distillation"]
    assert d["path"].endswith("teacher/1") and d["family"] == "lstm" and (d["temperature"], d["alpha"]) == (2.0, 0.7)
    assert 0 <= d["student_agreement"] <= 1 and 0 <= d["test_accuracy"] <= 1
    assert d["transfer_unlabelled"] == 400  # the 20 labelled texts in the pool were left out
    assert 150 < d["transfer_augmented"] <= 240  # one copy of each of the 240 training texts, repeats dropped
    card = (work / "student" / "1" / "assets.extra" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Distilled with `distill`" in card and "teacher/1" in card

    from sentiment_tf.serving.predictor import Predictor

    student = Predictor.load(work / "student")
    assert student.metadata["input_format"] == "raw" and len(student.predict(TEXTS).labels) == 2

    # Scores are cached beside the run directories: the same texts never go to the teacher again.
    from sentiment_tf.data.splits import TEXT
    from sentiment_tf.models import distillation

    cached = sorted((work / "runs" / "teacher-cache").glob("teacher-*.npy"))
    assert len(cached) == 4  # labelled and unlabelled texts, augmented copies, validation, test

    def no_teacher(self):
        raise AssertionError("the teacher was called although its scores are cached")

    monkeypatch.setattr(distillation.Teacher, "predictor", property(no_teacher))
    teacher = distillation.Teacher(str(work / "teacher"), ["正面", "负面"])
    sizes = sorted(len(np.load(path)) for path in cached)
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import load_splits

    splits = load_splits(DataConfig(data=str(work / "labelled.csv")))
    assert teacher.probabilities(splits.test[TEXT].tolist(), work / "runs" / "teacher-cache").shape == (sizes[0], 2)


@pytest.mark.slow
def test_teacher_scoring_interrupted_continues_where_it_stopped(work: Path, tmp_path: Path, monkeypatch):
    from sentiment_tf.models import distillation

    texts = pd.read_csv(work / "labelled.csv").text.tolist()
    monkeypatch.setattr(distillation, "SCORE_CHUNK", 64)
    teacher = distillation.Teacher(str(work / "teacher"), ["正面", "负面"])
    whole = teacher.probabilities(texts, tmp_path / "a")

    calls = []
    real = type(teacher.predictor).predict

    def crash_on_third(self, chunk, **kw):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, chunk, **kw)

    monkeypatch.setattr(type(teacher.predictor), "predict", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        teacher.probabilities(texts, tmp_path / "b")
    calls.clear()
    monkeypatch.setattr(type(teacher.predictor), "predict", lambda self, chunk, **kw: (calls.append(len(chunk)), real(
        self, chunk, **kw))[1])
    resumed = teacher.probabilities(texts, tmp_path / "b")
    assert sum(calls) == len(texts) - 128  # the two chunks saved before the crash were not scored again
    np.testing.assert_allclose(resumed, whole, atol=1e-6)


def test_augmented_copies_follow_tang_et_al():
    from sentiment_tf.data.augmentation import AugmentRates, augment

    texts = ["这家酒店很干净，服务也好，下次还来", "太差了，再也不来了，房间又脏又小", "书的内容很精彩，值得一读"]
    copies = augment(texts, 4, seed=3)
    assert copies == augment(texts, 4, seed=3) and copies != augment(texts, 4, seed=4)  # a seed fixes them
    assert 6 <= len(copies) <= 12 and not set(copies) & set(texts) and all(copies)
    # Swapping only: every word keeps its part of speech, drawn from the other texts' words of that tag.
    import jieba.posseg

    swapped = augment(texts, 3, seed=0, rates=AugmentRates(mask=0.0, swap=1.0, ngram=0.0))
    tags = lambda t: [p.flag for p in jieba.posseg.cut(t)]  # noqa: E731
    assert any(tags(s) == tags(texts[0]) for s in swapped)
    # Masking only drops words; n-gram sampling keeps a span of at most five words.
    dropped = augment(texts, 5, seed=1, rates=AugmentRates(mask=0.3, swap=0.0, ngram=0.0))
    assert all(len(s) < max(map(len, texts)) for s in dropped)
    spans = augment(texts, 5, seed=2, rates=AugmentRates(mask=0.0, swap=0.0, ngram=1.0))
    assert all(any(s in t for t in texts) and len(list(jieba.cut(s))) <= 5 for s in spans)
    assert augment(texts, 0, seed=0) == []


def test_distillation_loss_is_hintons():
    tf = pytest.importorskip("tensorflow")
    from sentiment_tf.models.distillation import SoftTargets, soften
    from sentiment_tf.models.lstm.classifier import distillation_loss, target_accuracy

    teacher = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], np.float32)
    student = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]], np.float32)
    y = np.array([0, 0, -1])
    T, alpha = 2.0, 0.7
    rows = SoftTargets.rows(soften(teacher, T), y)
    got = distillation_loss(2, T, alpha)(tf.constant(rows), tf.constant(student)).numpy()

    def ce(p, q):
        return -(p * np.log(q)).sum(-1)

    soft = ce(soften(teacher, T), soften(student, T)) * T ** 2
    hard = -np.log(student[[0, 1], [0, 0]])
    want = np.array([alpha * soft[0] + (1 - alpha) * hard[0], alpha * soft[1] + (1 - alpha) * hard[1], soft[2]])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(soften(teacher, 1.0), teacher, atol=1e-6)
    # Against the label where there is one, else the teacher's choice.
    assert target_accuracy(tf.constant(rows), tf.constant(student)).numpy().tolist() == [1.0, 0.0, 0.0]


@pytest.mark.slow
def test_bad_teachers_and_students_are_one_line(work: Path, tmp_path: Path, reviews: pd.DataFrame):
    three = reviews.head(60).assign(label=["正面", "负面", "中性"] * 20)
    three.to_csv(tmp_path / "three.csv", index=False)
    proc = cli("distill", "--teacher", str(work / "teacher"), "--data", "three.csv", *TINY_MODEL_ARGS, cwd=tmp_path)
    assert_user_error(proc, "--teacher", "labels")
    proc = cli("distill", "--teacher", str(work / "teacher"), "--data", str(work / "labelled.csv"), "--model", "bert",
               cwd=tmp_path)
    assert_user_error(proc, "--model bert", "LSTM")
    proc = cli("distill", "--data", str(work / "labelled.csv"), cwd=tmp_path)
    assert_user_error(proc, "--teacher")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()
