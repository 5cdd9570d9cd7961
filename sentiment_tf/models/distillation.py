"""Knowledge distillation (Hinton et al. 2015; Tang et al. 2019): a teacher export's soft probabilities
over a transfer set, scored once and cached, as training targets for a student.

Framework-free: the teacher is any export, loaded through :class:`~sentiment_tf.serving.predictor.Predictor`;
the loss lives with the student's family (``models/lstm/classifier.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.core.errors import UserError
from sentiment_tf.core.progress import progress
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.data.splits import Splits

log = logging.getLogger(__name__)

SCORE_CHUNK = 2048  # texts scored between two cache writes: an interrupted run loses at most one chunk


@dataclasses.dataclass
class SoftTargets:
    """The teacher's probabilities at ``temperature`` for every row of the student's training and
    validation frames (training rows with ``y = -1`` are transfer texts without a label)."""

    train: np.ndarray  # [len(train), labels]
    val: np.ndarray  # [len(val), labels]
    temperature: float
    alpha: float  # the weight of the soft targets in the loss of a labelled text; 1 - alpha the label's

    @staticmethod
    def rows(soft: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``[soft (k), one-hot label or zeros (k), has label (1)]`` per text: what the loss reads."""
        k = soft.shape[1]
        labelled = y >= 0
        onehot = np.zeros((len(y), k), np.float32)
        onehot[np.flatnonzero(labelled), y[labelled]] = 1.0
        return np.concatenate([soft.astype(np.float32), onehot, labelled[:, None].astype(np.float32)], axis=1)


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the teacher's distribution at temperature ``T`` (its logits divided by T,
    whatever constant its log-probabilities differ from its logits by)."""
    logits = np.log(np.maximum(probabilities.astype(np.float64), 1e-12)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def transfer_texts(raw: list[str], splits: Splits, lowercase: bool, exclude: list[str] = ()) -> list[str]:
    """Unlabelled texts for the transfer set, cleaned as training texts are, de-duplicated, and without
    any text of the labelled splits (one in validation or test would leak the teacher's view of it) or
    of ``exclude``."""
    seen = set(splits.train["text"]) | set(splits.val["text"]) | set(splits.test["text"]) | set(exclude)
    out, dropped = [], 0
    for text in dict.fromkeys(clean_text(t, lowercase) for t in raw):
        if not text.strip():
            continue
        if text in seen:
            dropped += 1
            continue
        out.append(text)
    if dropped:
        log.info("transfer set: %d unlabelled texts also in the labelled data were left out", dropped)
    return out


def with_transfer(splits: Splits, texts: list[str]) -> Splits:
    """``splits`` whose training frame also holds ``texts`` without labels (``y = -1``)."""
    extra = pd.DataFrame({"text": texts, "label": None, "y": np.full(len(texts), -1, np.int64)})
    train = pd.concat([splits.train, extra[[c for c in extra.columns if c in splits.train.columns]]],
                      ignore_index=True)
    train["y"] = train["y"].astype(np.int64)
    return dataclasses.replace(splits, train=train)


class Teacher:
    """A teacher export, its labels in the student's order, and its scores cached on disk."""

    def __init__(self, path: str, labels: list[str]):
        from sentiment_tf.export.versions import read_metadata, resolve_version_dir

        self.version_dir = resolve_version_dir(path)
        self.metadata = read_metadata(self.version_dir)
        theirs = list(self.metadata["labels"])
        if sorted(theirs) != sorted(labels):
            raise UserError(f"--teacher {path}: its labels {theirs} are not the data's {labels}; distil with a "
                            "teacher trained on the same labels")
        self.columns = [theirs.index(name) for name in labels]  # the teacher's columns in the student's order
        self.identity = json.dumps([str(self.version_dir.resolve()), self.metadata.get("created"),
                                    (self.version_dir / "saved_model.pb").stat().st_size])
        self._predictor = None

    def describe(self) -> dict:
        metrics = self.metadata.get("metrics") or {}
        return {"path": str(self.version_dir), "family": self.metadata.get("family"),
                "created": self.metadata.get("created"), "own_test_accuracy": metrics.get("test_accuracy")}

    def probabilities(self, texts: list[str], cache_dir: Path, batch_size: int = 64) -> np.ndarray:
        """The teacher's (calibrated) probabilities for cleaned ``texts``, columns in the student's label
        order. Scored in chunks, each saved to ``cache_dir`` as it completes: a run interrupted while
        scoring continues where it stopped, and a finished scoring is never repeated."""
        key = hashlib.sha256("\n".join([self.identity, *texts]).encode("utf-8")).hexdigest()[:24]
        cache = cache_dir / f"teacher-{key}.npy"
        done = np.load(cache) if cache.is_file() else np.zeros((0, len(self.columns)), np.float32)
        if len(done) > len(texts) or done.ndim != 2 or done.shape[1] != len(self.columns):
            done = np.zeros((0, len(self.columns)), np.float32)  # not ours (the key collided): score again
        if len(done):
            log.info("teacher scores: %d of %d texts cached in %s", len(done), len(texts), cache)
        parts = [done]
        for start in progress(range(len(done), len(texts), SCORE_CHUNK), len(texts) - len(done), "teacher scoring",
                              per_item=SCORE_CHUNK):
            chunk = texts[start:start + SCORE_CHUNK]
            parts.append(self.predictor.predict(chunk, batch_size=batch_size).probabilities[:, self.columns])
            atomic.write_bytes(cache, _npy(np.concatenate(parts)))
        return np.concatenate(parts).astype(np.float32)

    @property
    def predictor(self):
        if self._predictor is None:
            from sentiment_tf.serving.predictor import Predictor

            self._predictor = Predictor.load(self.version_dir)
        return self._predictor


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32))
    return buffer.getvalue()
