"""The LSTM's preprocessing: tokenization (jieba words or characters) of cleaned text, the vocabulary,
and what an export holds of both (its tokenizer settings, vocabulary and token view).

Serving must segment text exactly as training did, so everything that changes the token stream —
cleaning options, tokenizer mode, jieba version, HMM flag, user dictionary and stopword list — is
captured in :class:`TokenizerSettings`, saved with every export, and checked when a model is loaded.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiment_tf.core.errors import UserError
from sentiment_tf.core.progress import progress
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.evaluation.drift import Tokens
from sentiment_tf.export.versions import META_DIR

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)

_CHAR_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:[.'][A-Za-z0-9]+)*|\S")

PAD_TOKEN = ""  # id 0, also the mask value
UNK_TOKEN = "[UNK]"  # id 1; also stands in for a text with no tokens at all


def file_sha256(path: str | Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TokenizerSettings:
    """Everything that determines the token stream; saved with the model, compared on load."""

    mode: str = "word"  # "word" (jieba precise mode) or "char"
    hmm: bool = True
    lowercase: bool = True
    jieba_version: str | None = None
    user_dict_sha256: str | None = None
    stopwords_sha256: str | None = None

    def mismatches(self, other: "TokenizerSettings") -> list[str]:
        """Names the fields that differ, as 'field: saved=… here=…'."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"{f.name}: model={a} here={b}")
        return out


_GRAPHS: dict = {}  # (settings, forced splits) → the tokenizer's graph


class Tokenizer:
    """Cleans and segments text into tokens.

    Args:
        mode: "word" for jieba precise mode, "char" for characters.
        hmm: jieba's HMM for out-of-dictionary words (word mode only).
        lowercase: lower-case during cleaning.
        user_dict: path of a jieba user dictionary, or None.
        stopwords: path of a stopword file (one per line), or None.

    Example:
        >>> tok = Tokenizer(mode="word")
        >>> tok.tokenize("这家酒店很干净")
        ['这家', '酒店', '很', '干净']
    """

    def __init__(self, mode: str = "word", hmm: bool = True, lowercase: bool = True,
                 user_dict: str | Path | None = None, stopwords: str | Path | None = None):
        if mode not in ("word", "char"):
            raise UserError(f"unknown tokenizer mode {mode!r}; use 'word' or 'char'")
        for label, path in (("user dictionary", user_dict), ("stopwords file", stopwords)):
            if path is not None and not Path(path).is_file():
                raise UserError(f"{label} not found: {path}")
        self.mode = mode
        self.hmm = hmm
        self.lowercase = lowercase
        self.user_dict = str(user_dict) if user_dict else None
        self.stopwords_path = str(stopwords) if stopwords else None
        self.stopwords: frozenset[str] = frozenset()
        if stopwords:
            words = Path(stopwords).read_text(encoding="utf-8").split()
            self.stopwords = frozenset(clean_text(w, lowercase) for w in words)
        self.jieba = None
        self.force_split: frozenset[str] = frozenset()  # user words of frequency 0: finalseg splits them
        if mode == "word":
            import jieba
            from jieba import finalseg

            jieba.setLogLevel(logging.WARNING)  # it logs dictionary loading at DEBUG on its own handler
            # A private Tokenizer so user dictionaries never leak into jieba's dictionary.
            self.jieba = jieba.Tokenizer()
            if user_dict:
                # finalseg keeps forced splits in a module-level set: catch the ones this dictionary adds.
                shared, finalseg.Force_Split_Words = finalseg.Force_Split_Words, set()
                try:
                    self.jieba.load_userdict(str(user_dict))
                except Exception as err:  # noqa: BLE001 - jieba raises ValueError/UnicodeError
                    raise UserError(f"cannot read jieba user dictionary {user_dict}: {err}") from None
                finally:
                    self.force_split = frozenset(finalseg.Force_Split_Words)
                    finalseg.Force_Split_Words = shared | finalseg.Force_Split_Words

    @property
    def settings(self) -> TokenizerSettings:
        jieba_version = None
        if self.mode == "word":
            import jieba

            jieba_version = jieba.__version__
        return TokenizerSettings(
            mode=self.mode,
            hmm=self.hmm if self.mode == "word" else False,
            lowercase=self.lowercase,
            jieba_version=jieba_version,
            user_dict_sha256=file_sha256(self.user_dict) if self.mode == "word" else None,
            stopwords_sha256=file_sha256(self.stopwords_path),
        )

    def tokenize_clean(self, text: str) -> list[str]:
        """Tokens of an already-cleaned text."""
        if self.mode == "word":
            pieces = self.jieba.lcut(text, cut_all=False, HMM=self.hmm)
        else:
            pieces = _CHAR_TOKEN_RE.findall(text)
        tokens = []
        for piece in pieces:
            # Tokens must never contain whitespace: serving splits the joined string on spaces.
            for tok in piece.split():
                if tok not in self.stopwords:
                    tokens.append(tok)
        return tokens

    def tokenize(self, text: str) -> list[str]:
        return self.tokenize_clean(clean_text(text, self.lowercase))

    def segment(self, texts: Iterable[str], cleaned: bool = False) -> list[str]:
        """Space-joined tokens per text: the input format of the LSTM SavedModel's signature."""
        fn = self.tokenize_clean if cleaned else self.tokenize
        texts = list(texts)
        return [" ".join(fn(t)) for t in progress(texts, len(texts), "segmenting")]

    def graph(self) -> "tf.Module":
        """This tokenizer as TensorFlow ops: raw strings → ragged tokens, equal token for token. Built
        (and traced) once per process for each set of settings, which fix the tokens completely."""
        from sentiment_tf.models.lstm.tokenizer_graph import TokenizerGraph  # TensorFlow

        key = (self.settings, self.force_split)
        if key not in _GRAPHS:
            _GRAPHS.clear()  # one at a time: each holds a dictionary of tens of MB
            _GRAPHS[key] = TokenizerGraph(self)
        return _GRAPHS[key]

    def ensure_matches(self, saved: TokenizerSettings) -> None:
        """Refuses to tokenize for a model whose recorded settings differ from this tokenizer's."""
        diffs = saved.mismatches(self.settings)
        if diffs:
            raise UserError("tokenizer settings differ from the model's (" + "; ".join(diffs) +
                            "); install the recorded jieba version and use the model's own user "
                            "dictionary/stopwords")


def build_vocabulary(segmented: Iterable[str], min_freq: int = 2, max_size: int = 50000) -> list[str]:
    """Tokens of the training split, most frequent first (ties alphabetical, so it is deterministic).

    The returned list excludes the reserved padding and ``[UNK]`` entries, which take ids 0 and 1.
    """
    counts: collections.Counter[str] = collections.Counter()
    for line in segmented:
        counts.update(line.split(" ") if line else [])
    counts.pop(PAD_TOKEN, None)
    counts.pop(UNK_TOKEN, None)
    items = sorted((item for item in counts.items() if item[1] >= min_freq), key=lambda kv: (-kv[1], kv[0]))
    vocab = [tok for tok, _ in items[: max(0, max_size - 2)]]
    log.info("vocabulary: %d tokens (min_freq=%d) from %d distinct", len(vocab) + 2, min_freq, len(counts))
    return vocab


def extend_rows(table: np.ndarray, n: int) -> np.ndarray:
    """``table`` with ``n`` more rows at the mean of its trained rows (ids ≥ 2) plus small seeded noise:
    a neutral start for tokens the trained rows never saw, rather than random vectors."""
    rng = np.random.default_rng(0)
    extra = table[2:].mean(axis=0) + rng.normal(0, table[2:].std() * 0.1, (n, *table.shape[1:]))
    return np.concatenate([table, extra.astype(table.dtype)])


def token_view(segmented: list[str], vocabulary: set[str]) -> Tokens:
    """Segmented texts as token lists, with the count of tokens the vocabulary lacks (read as [UNK])."""
    tokens = [[t for t in s.split(" ") if t] for s in segmented]
    return Tokens(tokens, [sum(t not in vocabulary for t in toks) for toks in tokens])


# ---------------------------------------------------------------------------------------------
# What an export holds


def vocabulary_of_export(version_dir: Path) -> list[str]:
    """An LSTM export's vocabulary in id order from id 2 (ids 0 and 1 are padding and [UNK])."""
    lines = (Path(version_dir) / META_DIR / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return lines[2:-1] if lines[-1] == "" else lines[2:]


def tokenizer_from_metadata(version_dir: Path, meta: dict) -> Tokenizer:
    """Rebuilds the training-time tokenizer from an export and verifies it matches exactly."""
    saved = TokenizerSettings(**meta["tokenizer"])
    extra = version_dir / META_DIR
    files = meta.get("tokenizer_files", {})
    user_dict = extra / files["user_dict"] if files.get("user_dict") else None
    stopwords = extra / files["stopwords"] if files.get("stopwords") else None
    tok = Tokenizer(mode=saved.mode, hmm=saved.hmm, lowercase=saved.lowercase, user_dict=user_dict,
                    stopwords=stopwords)
    tok.ensure_matches(saved)
    return tok



# ---------------------------------------------------------------------------------------------
# Token ids, in Python and in the graph


def make_lookup(vocabulary: list[str]) -> "keras.layers.StringLookup":
    """Token → id: 0 is padding (the mask), 1 is ``[UNK]``, then ``vocabulary`` in order."""
    import keras  # Keras 3 and TensorFlow: for training and export, not for reading an export's files

    return keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=PAD_TOKEN,
                                     oov_token=UNK_TOKEN, num_oov_indices=1, output_mode="int")


def tokens_to_ids(tokens: "tf.RaggedTensor", lookup: "keras.layers.StringLookup", max_tokens: int) -> "tf.RaggedTensor":
    """Ragged tokens → ragged int64 ids, truncated to ``max_tokens``; see :func:`kept_tokens`."""
    import tensorflow as tf

    return tf.ragged.map_flat_values(lookup, kept_tokens(tokens, max_tokens))


def kept_tokens(tokens: "tf.RaggedTensor", max_tokens: int) -> "tf.RaggedTensor":
    """The tokens the model reads: the first ``max_tokens``, and a text with none becomes a single
    ``[UNK]``, so every row has length ≥ 1 (recurrent layers and cuDNN need one unmasked step)."""
    import tensorflow as tf

    tokens = tokens[:, :max_tokens]
    empty = tf.cast(tf.equal(tokens.row_lengths(), 0), tf.int64)
    unk = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(empty)], UNK_TOKEN), empty)
    return tf.concat([tokens, unk], axis=1)


def segmented_to_ids(segmented: "tf.Tensor", lookup: "keras.layers.StringLookup", max_tokens: int) -> "tf.RaggedTensor":
    """A batch of space-joined token strings → ragged int64 ids (see :func:`tokens_to_ids`)."""
    import tensorflow as tf

    tokens = tf.strings.split(segmented, sep=" ")
    tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)  # double spaces
    return tokens_to_ids(tokens, lookup, max_tokens)


def make_dataset(segmented: list[str], labels: np.ndarray | None, lookup: "keras.layers.StringLookup",
                 max_tokens: int, batch_size: int, bucketing: bool = True) -> "tf.data.Dataset":
    """Evaluation batches of ids (and labels), in length buckets or, with ``bucketing=False``, in
    input order padded per batch. Training uses :func:`batching.training_batches` instead."""
    import tensorflow as tf

    from sentiment_tf.models import batching  # TensorFlow

    ids = segmented_to_ids(tf.constant(segmented, dtype=tf.string), lookup, max_tokens)
    columns = () if labels is None else (tf.constant(labels, dtype=tf.float32 if labels.dtype.kind == "f" else tf.int64),)
    return batching.prefetched(batching.evaluation_batches(ids, columns, batch_size, max_tokens, bucketing))


@dataclasses.dataclass
class Preprocessor:
    """The LSTM's one text → ids object, used alike by training, prediction, explanation and export:
    cleaned text → tokens (``tokenizer``: jieba words or characters) → ids by ``vocabulary`` (0 is
    padding, 1 ``[UNK]``) → the first ``max_tokens``.

    Example:
        >>> pre = Preprocessor(Tokenizer("word"), ["酒店", "干净"], max_tokens=200)
        >>> pre.segment(["酒店很干净"])
        ['酒店 很 干净']
    """

    tokenizer: Tokenizer
    vocabulary: list[str]
    max_tokens: int

    @functools.cached_property
    def lookup(self) -> "keras.layers.StringLookup":
        """Token → id, shared by the training pipeline and the exported graph."""
        return make_lookup(self.vocabulary)

    def segment(self, texts: Iterable[str], cleaned: bool = True) -> list[str]:
        """Texts as space-joined tokens (what the exported signature takes)."""
        return self.tokenizer.segment(texts, cleaned=cleaned)

    def ids(self, segmented: "tf.Tensor") -> "tf.RaggedTensor":
        """Segmented strings → ragged ids, cut to ``max_tokens`` (in training and prediction)."""
        return segmented_to_ids(segmented, self.lookup, self.max_tokens)

    @functools.cached_property
    def graph(self) -> "tf.Module":
        """The tokenizer as TensorFlow ops (:meth:`Tokenizer.graph`), built once."""
        return self.tokenizer.graph()

    def graph_tokens(self, texts: "tf.Tensor") -> "tf.RaggedTensor":
        """Raw strings → the tokens the model reads, in the graph (the export's ``tokenize`` signature)."""
        return kept_tokens(self.graph(texts), self.max_tokens)

    def graph_ids(self, texts: "tf.Tensor") -> "tf.RaggedTensor":
        """Raw strings → ragged ids, all in the graph (the export's ``serving_default``)."""
        return tokens_to_ids(self.graph(texts), self.lookup, self.max_tokens)

    def dataset(self, segmented: list[str], labels: np.ndarray | None, batch_size: int,
                bucketing: bool = True) -> "tf.data.Dataset":
        """Evaluation batches of ids (and labels); see :func:`make_dataset`."""
        return make_dataset(segmented, labels, self.lookup, self.max_tokens, batch_size, bucketing)

    def kept_tokens(self, segmented: str) -> list[str]:
        """The tokens of one segmented text the model reads (an empty text reads as ``[UNK]``)."""
        return [t for t in segmented.split(" ") if t][: self.max_tokens] or [UNK_TOKEN]

    def tokens(self, segmented: list[str]) -> Tokens:
        """Segmented texts as token lists, with the count of tokens the vocabulary lacks."""
        return token_view(segmented, self.known)

    @functools.cached_property
    def known(self) -> set[str]:
        return set(self.vocabulary)

    def export_files(self) -> tuple[dict[str, str | Path | bytes], dict[str, Any]]:
        """What an export holds of it: files for ``assets.extra/`` and fields for its metadata (checked
        on load by :meth:`from_export`)."""
        files: dict[str, str | Path | bytes] = {
            "vocab.txt": "\n".join([PAD_TOKEN, UNK_TOKEN, *self.vocabulary]).encode("utf-8") + b"\n"}
        tokenizer_files = {}
        if self.tokenizer.user_dict:
            files["user_dict.txt"] = self.tokenizer.user_dict
            tokenizer_files["user_dict"] = "user_dict.txt"
        if self.tokenizer.stopwords_path:
            files["stopwords.txt"] = self.tokenizer.stopwords_path
            tokenizer_files["stopwords"] = "stopwords.txt"
        metadata = {"tokenizer": dataclasses.asdict(self.tokenizer.settings), "tokenizer_files": tokenizer_files,
                    "max_tokens": self.max_tokens, "vocabulary_size": len(self.vocabulary) + 2}
        return files, metadata

    @classmethod
    def from_export(cls, version_dir: Path, metadata: dict[str, Any],
                    tokenizer: Tokenizer | None = None) -> "Preprocessor":
        """The preprocessor an export was trained with, its tokenizer verified against this machine's
        (or ``tokenizer``, one already rebuilt and verified from the same export)."""
        return cls(tokenizer or tokenizer_from_metadata(version_dir, metadata), vocabulary_of_export(version_dir),
                   int(metadata["max_tokens"]))
