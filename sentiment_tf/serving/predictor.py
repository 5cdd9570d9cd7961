"""A loaded export that takes raw texts (:class:`Predictor`), and what an export expects as input
without loading its graph (:class:`ExportInputs`, all a TF Serving client needs).

Loading checks that the directory is a sentiment_tf export. Exports take raw text (their graphs clean
and tokenize); for LSTM exports made before jieba ran in the graph, which take segmented text, loading
rebuilds the tokenizer from the settings recorded at training time (jieba version, HMM flag, user
dictionary, stopwords) and refuses any mismatch rather than segment differently from training.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_tf.core.errors import UserError
from sentiment_tf.core.progress import progress
from sentiment_tf.data.cleaning import NOTHING_TO_CLASSIFY, clean_text, has_words
from sentiment_tf.evaluation.drift import Tokens
from sentiment_tf.export.versions import (
    META_DIR,
    load_saved_model,
    read_metadata,
    resolve_version_dir,
)
from sentiment_tf.models.lstm.preprocessor import (
    Preprocessor,
    Tokenizer,
    tokenizer_from_metadata,
)


@dataclasses.dataclass
class Predictions:
    labels: list[str]  # predicted label name per text
    label_ids: np.ndarray  # [n] int
    probabilities: np.ndarray  # [n, num_labels], columns in ``label_names`` order
    label_names: list[str]
    token_counts: np.ndarray | None = None  # [n] tokens per text, from an export whose graph counts them
    unknown_counts: np.ndarray | None = None  # [n] of them not in the vocabulary (read as [UNK])
    # [n] True where a raw text has nothing to classify (no letter, digit or CJK character once cleaned):
    # its label is None; its probabilities are the model's prior for such input, not a judgement.
    nothing: np.ndarray | None = None

    def reason(self, i: int) -> str | None:
        return NOTHING_TO_CLASSIFY if self.nothing is not None and self.nothing[i] else None


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
        """What the serving signature expects: raw text (the graph cleans and tokenizes; cleaning twice
        would decode "&amp;#183;" twice), or segmented text for LSTM exports made before jieba ran in
        the graph."""
        if self.tokenizer is not None:
            return self.tokenizer.segment(texts)
        if self.metadata.get("input_format") == "raw":
            return list(texts)
        raise UserError(f"{self.version_dir}: unknown input format {self.metadata.get('input_format')!r}; "
                        "was it exported by a newer sentiment_tf?")

    def predictions(self, probabilities: Any, texts: list[str] | None = None) -> Predictions:
        """Probabilities from the signature (or a server) as labelled predictions; given the raw ``texts``,
        one with nothing to classify gets no label (the rule every command follows)."""
        probs = np.asarray(probabilities, dtype=np.float32).reshape(-1, len(self.label_names))
        ids = probs.argmax(axis=-1)
        labels: list[str | None] = [self.label_names[i] for i in ids]
        nothing = None
        if texts is not None:
            nothing = np.array([not has_words(str(t)) for t in texts], dtype=bool)
            labels = [None if n else label for n, label in zip(nothing, labels)]
        return Predictions(labels, ids, probs, self.label_names, nothing=nothing)


def _starts(n: int, size: int) -> list[int]:
    """Window starts over ``n`` items: every ``size // 2`` until a window reaches the end."""
    if n <= size:
        return [0]
    step = max(1, size // 2)
    starts = list(range(0, n - size, step))
    return starts + [n - size]


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
            import tensorflow_text  # noqa: F401 - registers the tokenizer and regex ops the graph uses
        self._loaded = load_saved_model(version_dir)
        self._signature = self._loaded.signatures["serving_default"]

    def windows(self, text: str) -> list[str]:
        """What the model reads of one raw text, whole: the text itself when it fits, else overlapping
        windows of the model's length (LSTM: ``max_tokens`` jieba tokens; BERT: ``max_length`` − 2 word
        pieces), each starting half a window after the last — segmented for exports that take segmented
        text, else as spans of the cleaned text."""
        if "max_tokens" in self.metadata:  # jieba tokens (LSTM)
            tokens = self.preprocessor.tokenizer.tokenize(text)
            size = self.preprocessor.max_tokens
            if self.tokenizer is not None:
                return [" ".join(tokens[i:i + size]) for i in _starts(len(tokens), size)]
            if len(tokens) <= size:
                return [text]
            cleaned = clean_text(text, self.preprocessor.tokenizer.lowercase)
            offsets, at = [], 0
            for token in tokens:  # jieba's tokens are the cleaned text in order, less spaces and stopwords
                at = cleaned.index(token, at)
                offsets.append((at, at + len(token)))
                at += len(token)
        else:
            cleaned = clean_text(text, bool(self.metadata.get("cleaning", {}).get("lowercase", True)))
            offsets = self._wordpiece()(cleaned, add_special_tokens=False, return_offsets_mapping=True,
                                        split_special_tokens=True, verbose=False)["offset_mapping"]
            size = int(self.metadata["max_length"]) - 2
            if len(offsets) <= size:
                return [text]
        return [cleaned[offsets[i][0]: offsets[min(i + size, len(offsets)) - 1][1]] for i in _starts(len(offsets), size)]

    @functools.cached_property
    def preprocessor(self) -> Preprocessor:
        """An LSTM export's preprocessor: its vocabulary and Python tokenizer (rebuilt from the export and
        verified on first use; predicting with a raw-text export never needs it)."""
        return Preprocessor.from_export(self.version_dir, self.metadata, self.tokenizer)

    def _wordpiece(self) -> Any:
        if not hasattr(self, "_hf_tokenizer"):
            from transformers import BertTokenizerFast

            self._hf_tokenizer = BertTokenizerFast.from_pretrained(str(self.version_dir / META_DIR / "hf_model"))
        return self._hf_tokenizer

    def predict(self, texts: list[str] | str, batch_size: int = 256, prepared: bool = False,
                long_text: str = "cut") -> Predictions:
        """Predictions for raw texts (or, with ``prepared``, for what :meth:`prepare` returns); a single
        string is one text. ``long_text='window'``: a text longer than the model reads is scored as
        overlapping :meth:`windows` whose probabilities are averaged ('cut': its beginning only)."""
        if isinstance(texts, str):
            texts = [texts]  # not one text per character
        if long_text == "window" and not prepared:
            parts = [self.windows(str(t)) for t in texts]
            flat = [w for p in parts for w in p]
            # windows are what the signature takes: segmented text (LSTM), text the graph cleans (BERT)
            probs = self._predict(flat, batch_size, prepared=True).probabilities
            owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
            sums = np.zeros((len(parts), probs.shape[1]), np.float64)
            np.add.at(sums, owner, probs)
            return self.predictions(sums / np.array([len(p) for p in parts])[:, None], texts)
        return self._predict(texts, batch_size, prepared)

    def tokens(self, texts: list[str], prepared: bool = False) -> "Tokens":
        """The model's own tokens of raw texts (or, with ``prepared``, of segmented ones) — jieba tokens or
        untruncated word pieces — and how many of them it does not know (read as [UNK])."""
        if "max_tokens" in self.metadata:  # jieba tokens (LSTM)
            pre = self.preprocessor
            return pre.tokens(list(texts) if prepared else pre.segment(list(map(str, texts)), cleaned=False))

        lowercase = bool(self.metadata.get("cleaning", {}).get("lowercase", True))
        from sentiment_tf.models.bert.preprocessor import wordpiece_view  # TensorFlow: for BERT exports only

        return wordpiece_view(self._wordpiece(), [clean_text(str(t), lowercase) for t in texts])

    def embed(self, texts: list[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """The pooled features the classifier head reads (``[n, d]``) and the probabilities, for raw texts."""
        import tensorflow as tf

        if "embed" not in self._loaded.signatures:
            raise UserError(f"{self.version_dir} has no 'embed' signature (exported by an older sentiment_tf); "
                            "export it again (python -m sentiment_tf.finetune or train) to use --strategy "
                            "diverse or hybrid, or choose --strategy random or uncertainty")
        signature = self._loaded.signatures["embed"]
        inputs = self.prepare([str(t) for t in texts])
        order = np.argsort([len(s) for s in inputs], kind="stable")
        embeddings, probs = None, np.zeros((len(inputs), len(self.label_names)), dtype=np.float32)
        for start in progress(range(0, len(inputs), batch_size), len(inputs), "embedding", per_item=batch_size):
            idx = order[start:start + batch_size]
            out = signature(**{self.input_name: tf.constant([inputs[i] for i in idx], dtype=tf.string)})
            if embeddings is None:
                embeddings = np.zeros((len(inputs), out["embedding"].shape[-1]), dtype=np.float32)
            embeddings[idx] = out["embedding"].numpy()
            probs[idx] = out["probabilities"].numpy()
        return (embeddings if embeddings is not None else np.zeros((0, 0), np.float32)), probs

    def _predict(self, texts: list[str], batch_size: int, prepared: bool) -> Predictions:
        import tensorflow as tf

        inputs = [str(t) for t in texts] if prepared else self.prepare([str(t) for t in texts])
        # Similar lengths per batch: the signature pads each batch only to its longest text.
        order = np.argsort([len(s) for s in inputs], kind="stable")
        probs = np.zeros((len(inputs), len(self.label_names)), dtype=np.float32)
        counted = "predict_with_counts" in self._loaded.signatures
        signature = self._loaded.signatures["predict_with_counts" if counted else "serving_default"]
        lengths, unknown = np.zeros(len(inputs), np.int64), np.zeros(len(inputs), np.int64)
        for start in progress(range(0, len(inputs), batch_size), len(inputs), "predicting", per_item=batch_size):
            idx = order[start:start + batch_size]
            out = signature(**{self.input_name: tf.constant([inputs[i] for i in idx], dtype=tf.string)})
            probs[idx] = out["probabilities"].numpy()
            if counted:
                lengths[idx], unknown[idx] = out["token_count"].numpy(), out["unknown_count"].numpy()
        result = self.predictions(probs, None if prepared else texts)  # raw texts: the nothing-to-classify rule
        if counted:
            result.token_counts, result.unknown_counts = lengths, unknown
        return result
