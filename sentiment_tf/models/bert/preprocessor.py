"""Hugging Face's BERT WordPiece tokenization as TensorFlow ops, for raw-text SavedModels.

``tensorflow_text.BertTokenizer`` differs from the Hugging Face tokenizer a checkpoint ships in
ways that change token ids: it case-folds before stripping accents (HF strips, then lower-cases,
character by character), replaces control characters with a space (HF deletes them), gives
``[UNK]`` to words over 100 *bytes* (HF: over 100 *characters*, so 34 emoji or kana in a row already
differ), and splits off U+2B820–U+2B91F, which the Rust tokenizers do not.
So this module rebuilds HF's pipeline step by step from the settings in the checkpoint's
``tokenizer.json`` — normalizer, pre-tokenizer, WordPiece model — using only core ops plus
tensorflow-text's ``NormalizeUTF8``, ``RegexSplitWithOffsets`` and ``WordpieceTokenizeWithOffsets``,
which stock TF Serving builds include. Settings it cannot reproduce are refused with the reason.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import tensorflow as tf

from sentiment_tf.core.errors import UserError
from sentiment_tf.core.progress import progress
from sentiment_tf.data.cleaning import WHITESPACE
from sentiment_tf.data.cleaning_graph import clean_text_graph
from sentiment_tf.evaluation import drift
from sentiment_tf.evaluation.drift import Tokens
from sentiment_tf.models import batching

# HF BasicTokenizer / tokenizers' BertPreTokenizer: every ASCII symbol and Unicode punctuation.
PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|\p{P}"
# CJK ideographs that HF surrounds with spaces (handle_chinese_chars), as the Rust `tokenizers` define
# them: U+2B920, not the slow tokenizer's U+2B820, starts the sixth range (checked by the parity test).
CJK = ("[\\x{4E00}-\\x{9FFF}]|[\\x{3400}-\\x{4DBF}]|[\\x{20000}-\\x{2A6DF}]|[\\x{2A700}-\\x{2B73F}]"
       "|[\\x{2B740}-\\x{2B81F}]|[\\x{2B920}-\\x{2CEAF}]|[\\x{F900}-\\x{FAFF}]|[\\x{2F800}-\\x{2FA1F}]")
# HF's clean_text deletes NUL, U+FFFD and every "other" character (Cc, Cf, Co, Cs) but tab/newline/CR,
# which become spaces; RE2's \p{C} covers the same categories.
CONTROL = r"[\p{C}\x{FFFD}]"
WHITESPACE_KEEP = r"[\t\n\r]"


@dataclasses.dataclass(frozen=True)
class WordPieceSettings:
    """What decides a BERT tokenizer's word pieces; read from the HF tokenizer, saved with exports."""

    lowercase: bool
    strip_accents: bool
    clean_text: bool = True
    handle_chinese_chars: bool = True
    continuing_subword_prefix: str = "##"
    max_input_chars_per_word: int = 100
    unk_token: str = "[UNK]"

    @classmethod
    def from_hf(cls, tokenizer: Any, source: str = "the checkpoint") -> "WordPieceSettings":
        """Reads a ``BertTokenizerFast``'s backend; refuses normalizers and models it cannot express."""
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        norm, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec.get("model") or {}
        problems = []
        if norm.get("type") != "BertNormalizer":
            problems.append(f"normalizer {norm.get('type')!r} (only BertNormalizer is reproduced in the graph)")
        if pre.get("type") != "BertPreTokenizer":
            problems.append(f"pre-tokenizer {pre.get('type')!r} (only BertPreTokenizer is reproduced in the graph)")
        if model.get("type") != "WordPiece":
            problems.append(f"model {model.get('type')!r} (only WordPiece)")
        if problems:
            raise UserError(f"{source}: its tokenizer cannot run inside the SavedModel: {'; '.join(problems)}")
        lowercase = bool(norm.get("lowercase", True))
        strip = norm.get("strip_accents")
        return cls(lowercase=lowercase, strip_accents=lowercase if strip is None else bool(strip),
                   clean_text=bool(norm.get("clean_text", True)),
                   handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)),
                   continuing_subword_prefix=model.get("continuing_subword_prefix") or "##",
                   max_input_chars_per_word=int(model.get("max_input_chars_per_word") or 100),
                   unk_token=model.get("unk_token") or "[UNK]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class WordPieceGraph(tf.Module):
    """Cleaned text → word-piece ids (ragged, no [CLS]/[SEP]), equal to the HF tokenizer's."""

    def __init__(self, vocab: Any, settings: WordPieceSettings, unk_id: int):
        import tensorflow_text as tf_text

        super().__init__()
        self.settings = settings
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                          tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
            default_value=unk_id)
        # Words are limited in characters below, so no word within that limit may hit the byte limit.
        self.wordpiece = tf_text.WordpieceTokenizer(
            self.table, suffix_indicator=settings.continuing_subword_prefix,
            max_bytes_per_word=4 * settings.max_input_chars_per_word + 4, token_out_type=tf.int64,
            unknown_token=settings.unk_token)

    def words(self, text: tf.Tensor) -> tf.RaggedTensor:
        """BertNormalizer + BertPreTokenizer: [n] strings → [n, words] strings."""
        import tensorflow_text as tf_text

        s = self.settings
        if s.clean_text:
            text = tf.strings.regex_replace(text, WHITESPACE_KEEP, " ")
            text = tf.strings.regex_replace(text, CONTROL, "")
        if s.strip_accents:
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        if s.lowercase:
            # ICU lower-cases a word-final Σ to ς; HF maps every Σ to σ, character by character.
            text = tf.strings.lower(tf.strings.regex_replace(text, "Σ", "σ"), encoding="utf-8")
        keep = PUNCTUATION + ("|" + CJK if s.handle_chinese_chars else "")
        # HF splits on Unicode White_Space; cleaned text holds only ' ', so cleaning's set is enough.
        words, _, _ = tf_text.regex_split_with_offsets(text, WHITESPACE + "|" + keep, keep)
        return words

    def __call__(self, text: tf.Tensor) -> tf.RaggedTensor:
        words = self.words(text)
        # HF gives [UNK] to a whole word longer than max_input_chars_per_word characters.
        too_long = tf.strings.length(words, unit="UTF8_CHAR") > self.settings.max_input_chars_per_word
        words = tf.ragged.map_flat_values(
            lambda w, long: tf.where(long, tf.constant(self.settings.unk_token), w), words, too_long)
        return self.wordpiece.tokenize(words).merge_dims(-2, -1)


# ---------------------------------------------------------------------------------------------
# Word pieces in Python: training batches and the token view



def head_length(budget: int, truncation: str) -> int:
    """How many of a too-long text's ``budget`` kept word pieces come from its beginning (the rest from
    its end): 'head' all, 'tail' none, 'head+tail' a quarter (Sun et al. 2019: 128 + 382 of 510)."""
    return {"head": budget, "tail": 0, "head+tail": budget // 4}[truncation]


def kept_span(length: int, budget: int, truncation: str) -> tuple[int, int]:
    """Of ``length`` word pieces, keep the first ``head`` and the last ``tail`` (head + tail ≤ budget);
    a text within the budget is kept whole. :func:`truncate_graph` is the same rule in-graph."""
    if length <= budget:
        return length, 0
    head = head_length(budget, truncation)
    return head, budget - head


def truncated(pieces: list, budget: int, truncation: str) -> list:
    head, tail = kept_span(len(pieces), budget, truncation)
    return pieces[:head] + (pieces[len(pieces) - tail:] if tail else [])


def truncate_graph(pieces: tf.RaggedTensor, budget: int, truncation: str) -> tf.RaggedTensor:
    """:func:`kept_span`'s rule on a ragged batch of word pieces, as TensorFlow ops."""
    head = head_length(budget, truncation)
    lengths = tf.expand_dims(pieces.row_lengths(), 1)
    position = tf.ragged.range(pieces.row_lengths())
    keep = (lengths <= budget) | (position < head) | (position >= lengths - (budget - head))
    return tf.ragged.boolean_mask(pieces, keep)


def encode(tokenizer: Any, texts: list[str], max_length: int, truncation: str = "head") -> tf.RaggedTensor:
    """Cleaned texts → ragged word-piece ids with [CLS]/[SEP], cut to ``max_length`` by ``truncation``."""
    texts, chunk, ids = list(texts), 2000, []
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for start in progress(range(0, len(texts), chunk), len(texts), "tokenizing", per_item=chunk):
        # split_special_tokens: a review that contains "[SEP]" is text, as it is for the in-graph tokenizer.
        pieces = tokenizer(texts[start:start + chunk], add_special_tokens=False, split_special_tokens=True,
                           verbose=False)["input_ids"]
        ids += [[cls, *truncated(p, max_length - 2, truncation), sep] for p in pieces]
    return tf.ragged.constant(ids, dtype=tf.int64)


def wordpiece_view(tokenizer: Any, texts: list[str]) -> "drift.Tokens":
    """Cleaned texts as word pieces (as :func:`encode` reads them, untruncated) and their [UNK] counts."""
    ids = tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]
    unk = tokenizer.unk_token_id
    return Tokens([tokenizer.convert_ids_to_tokens(i) for i in ids], [sum(x == unk for x in i) for i in ids])


def make_dataset(tokenizer: Any, texts: list[str], labels: np.ndarray | None, max_length: int, batch_size: int,
                 bucketing: bool = True, truncation: str = "head") -> tf.data.Dataset:
    """Evaluation batches of ({input_ids, attention_mask}[, labels]), padded per length bucket (or,
    with ``bucketing=False``, in input order). Training uses :func:`batching.training_batches`."""
    ids = encode(tokenizer, texts, max_length, truncation)
    columns = () if labels is None else (tf.constant(labels, dtype=tf.int64),)
    ds = batching.evaluation_batches(ids, columns, batch_size, max_length, bucketing, pad_value=tokenizer.pad_token_id)
    return batching.prefetched(ds.map(lambda ids, *rest: with_features(tokenizer, ids, *rest)))


def with_features(tokenizer: Any, ids: tf.Tensor, *rest: tf.Tensor):
    x = {"input_ids": ids, "attention_mask": tf.cast(ids != tokenizer.pad_token_id, tf.int64)}
    return (x, *rest) if rest else x


# ---------------------------------------------------------------------------------------------
# The preprocessor: one object for training, prediction, explanation and export


class TokenIdsGraph(tf.Module):
    """Raw strings → ragged ids with [CLS]/[SEP], in the graph: the preprocessor's rules as TensorFlow
    ops (cleaning, the checkpoint's WordPiece, truncation), equal to :meth:`Preprocessor.encode`."""

    def __init__(self, preprocessor: "Preprocessor", vocab: Any):
        super().__init__()
        self.wordpiece = WordPieceGraph(vocab, preprocessor.settings, preprocessor.special_ids["unk"])
        self.lowercase, self.budget, self.truncation = preprocessor.lowercase, preprocessor.max_length - 2, preprocessor.truncation
        self.cls, self.sep = preprocessor.special_ids["cls"], preprocessor.special_ids["sep"]

    def __call__(self, text: tf.Tensor) -> tf.RaggedTensor:
        pieces = truncate_graph(self.wordpiece(clean_text_graph(text, self.lowercase)), self.budget, self.truncation)
        n = tf.shape(text, out_type=tf.int64)[0]
        return tf.concat([tf.fill([n, 1], tf.constant(self.cls, tf.int64)), pieces,
                          tf.fill([n, 1], tf.constant(self.sep, tf.int64))], axis=1)


@dataclasses.dataclass
class Preprocessor:
    """BERT's one text → ids object, used alike by training, prediction, explanation and export:
    text cleaned with ``lowercase`` → the checkpoint's word pieces (``tokenizer``) → ``[CLS]``, the pieces
    ``truncation`` keeps of ``max_length`` − 2, ``[SEP]``. In Python (:meth:`encode`) and in the graph
    (:meth:`graph`), held equal by the export check.

    Example:
        >>> pre = Preprocessor(BertTokenizerFast.from_pretrained("bert-base-chinese"), 128, "head+tail")
        >>> pre.encode(["酒店很干净"]).to_list()
        [[101, 6983, 2421, 2523, 2397, 1112, 102]]
    """

    tokenizer: Any  # BertTokenizerFast
    max_length: int
    truncation: str = "head"
    lowercase: bool = True  # how the texts were cleaned (the graph cleans raw text the same way)

    @property
    def special_ids(self) -> dict[str, int]:
        tok = self.tokenizer
        return {"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": tok.pad_token_id, "unk": tok.unk_token_id}

    @property
    def settings(self) -> WordPieceSettings:
        return WordPieceSettings.from_hf(self.tokenizer)

    def encode(self, texts: list[str]) -> tf.RaggedTensor:
        """Cleaned texts → ragged ids with [CLS]/[SEP]."""
        return encode(self.tokenizer, texts, self.max_length, self.truncation)

    def dataset(self, texts: list[str], labels: np.ndarray | None, batch_size: int,
                bucketing: bool = True) -> tf.data.Dataset:
        """Evaluation batches of features (and labels); see :func:`make_dataset`."""
        return make_dataset(self.tokenizer, texts, labels, self.max_length, batch_size, bucketing, self.truncation)

    def features(self, ids: tf.Tensor, *rest: tf.Tensor):
        """Padded ids → the model's inputs (``input_ids``, ``attention_mask``)."""
        return with_features(self.tokenizer, ids, *rest)

    def kept_span(self, length: int) -> tuple[int, int]:
        """How many of ``length`` word pieces are kept from the beginning and from the end."""
        return kept_span(length, self.max_length - 2, self.truncation)

    def tokens(self, texts: list[str]) -> Tokens:
        """Word pieces of cleaned texts (whole, not truncated), and how many are [UNK]."""
        return wordpiece_view(self.tokenizer, texts)

    def graph(self, vocab: Any) -> TokenIdsGraph:
        """The same rules as TensorFlow ops, with ``vocab`` (a file or ``tf.saved_model.Asset``) as the table."""
        return TokenIdsGraph(self, vocab)

    def export_metadata(self) -> dict[str, Any]:
        """What an export records of it (checked when it is loaded)."""
        return {"cleaning": {"lowercase": self.lowercase}, "wordpiece": self.settings.to_dict(),
                "max_length": self.max_length, "truncation": self.truncation}

    @classmethod
    def from_export(cls, tokenizer: Any, metadata: dict[str, Any]) -> "Preprocessor":
        return cls(tokenizer, int(metadata["max_length"]), str(metadata.get("truncation", "head")),
                   bool(metadata.get("cleaning", {}).get("lowercase", True)))
