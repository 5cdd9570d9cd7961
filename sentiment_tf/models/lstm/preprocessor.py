"""The LSTM's preprocessing: tokenization (jieba words or characters) of cleaned text, the vocabulary,
and what an export holds of both (its tokenizer settings, vocabulary and token view).

Serving must segment text exactly as training did, so everything that changes the token stream —
cleaning options, tokenizer mode, jieba version, HMM flag, user dictionary and stopword list — is
captured in :class:`TokenizerSettings`, saved with every export, and checked when a model is loaded.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sentiment_tf.core.errors import UserError
from sentiment_tf.core.progress import progress
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.evaluation.drift import Tokens
from sentiment_tf.export.versions import META_DIR

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
        self._jieba = None
        if mode == "word":
            import jieba

            jieba.setLogLevel(logging.WARNING)  # it logs dictionary loading at DEBUG on its own handler
            # A private Tokenizer so user dictionaries never leak into jieba's global state.
            self._jieba = jieba.Tokenizer()
            if user_dict:
                try:
                    self._jieba.load_userdict(str(user_dict))
                except Exception as err:  # noqa: BLE001 - jieba raises ValueError/UnicodeError
                    raise UserError(f"cannot read jieba user dictionary {user_dict}: {err}") from None

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
            pieces = self._jieba.lcut(text, cut_all=False, HMM=self.hmm)
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
