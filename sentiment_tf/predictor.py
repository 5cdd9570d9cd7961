"""A loaded export that takes raw texts (:class:`Predictor`), and what an export expects as input
without loading its graph (:class:`ExportInputs`, all a TF Serving client needs).

Loading checks that the directory is a sentiment_tf export and rebuilds the tokenizer from the
settings recorded at training time (jieba version, HMM flag, user dictionary, stopwords); any
mismatch is refused rather than silently segmenting differently from training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_tf.errors import UserError
from sentiment_tf.export import load_saved_model, read_metadata, resolve_version_dir, tokenizer_from_metadata
from sentiment_tf.progress import progress
from sentiment_tf.text import Tokenizer


@dataclasses.dataclass
class Predictions:
    labels: list[str]  # predicted label name per text
    label_ids: np.ndarray  # [n] int
    probabilities: np.ndarray  # [n, num_labels], columns in ``label_names`` order
    label_names: list[str]


class ExportInputs:
    """What an export expects as input — labels, signature input name and the training-time tokenizer —
    without loading its graph (the TF Serving client needs only this)."""

    def __init__(self, version_dir: Path, metadata: dict, tokenizer: Tokenizer | None):
        self.version_dir = version_dir
        self.metadata = metadata
        self.tokenizer = tokenizer
        self.label_names: list[str] = list(metadata["labels"])
        self.input_name: str = metadata["signature"]["input"]

    @classmethod
    def load(cls, path: str | Path):
        version_dir = resolve_version_dir(path)
        meta = read_metadata(version_dir)
        tokenizer = None
        if meta.get("input_format") == "segmented":
            tokenizer = tokenizer_from_metadata(version_dir, meta)
        return cls(version_dir, meta, tokenizer)

    def prepare(self, texts: list[str]) -> list[str]:
        """What the serving signature expects: segmented text for LSTM exports, raw text for BERT exports
        (their graph cleans and tokenizes; cleaning twice would decode "&amp;#183;" twice)."""
        if self.tokenizer is not None:
            return self.tokenizer.segment(texts)
        if self.metadata.get("input_format") == "raw":
            return list(texts)
        raise UserError(f"{self.version_dir}: unknown input format {self.metadata.get('input_format')!r}; "
                        "was it exported by a newer sentiment_tf?")

    def predictions(self, probabilities: Any) -> Predictions:
        """Probabilities from the signature (or a server) as labelled predictions."""
        probs = np.asarray(probabilities, dtype=np.float32).reshape(-1, len(self.label_names))
        ids = probs.argmax(axis=-1)
        return Predictions([self.label_names[i] for i in ids], ids, probs, self.label_names)


class Predictor(ExportInputs):
    """A loaded export that takes raw texts.

    Example:
        >>> p = Predictor.load("saved_models/lstm")
        >>> p.predict(["这家酒店很干净"]).labels
        ['正面']
    """

    def __init__(self, version_dir: Path, metadata: dict, tokenizer: Tokenizer | None):
        super().__init__(version_dir, metadata, tokenizer)
        if metadata.get("input_format") == "raw":
            import tensorflow_text  # noqa: F401 - registers the tokenizer ops the graph uses
        self._signature = load_saved_model(version_dir).signatures["serving_default"]

    def predict(self, texts: list[str] | str, batch_size: int = 256, prepared: bool = False) -> Predictions:
        """Predictions for raw texts (or, with ``prepared``, for what :meth:`prepare` returns); a single
        string is one text."""
        import tensorflow as tf

        if isinstance(texts, str):
            texts = [texts]  # not one text per character
        inputs = [str(t) for t in texts] if prepared else self.prepare([str(t) for t in texts])
        # Similar lengths per batch: the signature pads each batch only to its longest text.
        order = np.argsort([len(s) for s in inputs], kind="stable")
        probs = np.zeros((len(inputs), len(self.label_names)), dtype=np.float32)
        for start in progress(range(0, len(inputs), batch_size), len(inputs), "predicting", per_item=batch_size):
            idx = order[start:start + batch_size]
            out = self._signature(**{self.input_name: tf.constant([inputs[i] for i in idx], dtype=tf.string)})
            probs[idx] = out["probabilities"].numpy()
        return self.predictions(probs)
