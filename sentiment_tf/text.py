"""Text cleaning and tokenization (jieba words or characters), with settings that travel with models.

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
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from sentiment_tf.errors import UserError
from sentiment_tf.progress import progress

log = logging.getLogger(__name__)

PAD_TOKEN = ""  # id 0, also the mask value
UNK_TOKEN = "[UNK]"  # id 1; also stands in for a text with no tokens at all

# Every pattern below is written so that Python's `re` and RE2 (TensorFlow's regex engine) read it
# the same way: `text_graph.clean_text_graph` runs these exact patterns inside a SavedModel, and the
# BERT export's parity test holds the two implementations to identical output.

# HTML entities: a fixed table plus decimal character references (what crawled reviews contain;
# hexadecimal references are left as they are, in both implementations).
HTML_ENTITIES = (("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"),
                 ("&middot;", "·"), ("&hellip;", "…"), ("&mdash;", "—"), ("&ndash;", "–"),
                 ("&ldquo;", "“"), ("&rdquo;", "”"), ("&lsquo;", "‘"), ("&rsquo;", "’"), ("&times;", "×"),
                 ("&yen;", "¥"), ("&copy;", "©"), ("&reg;", "®"),
                 ("&amp;", "&"))  # last, so "&amp;lt;" becomes "&lt;" as in html.unescape
DECIMAL_ENTITY = r"&#[0-9]{1,7};"
HTML_TAG = r"<[^<>]{1,200}>"
# Applied after NFKC, so only ASCII URL characters remain; ',', '!' and brackets end a URL because
# reviews put punctuation right after links far more often than inside them.
URL = r"(?i)(?:https?://|ftp://|www\.)[A-Za-z0-9\-._~:/?#@$&'*+;=%]*"
# Control, format and private-use characters (zero-width spaces, BOMs, bidi marks, emoji tag and
# variation selectors stay out): BERT tokenizers drop them, so cleaning drops them for every model.
CONTROL = (r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\x{200b}-\x{200f}\x{202a}-\x{202e}"
           r"\x{2060}-\x{2064}\x{2066}-\x{206f}\x{feff}\x{fff9}-\x{fffb}\x{fffd}\x{e000}-\x{f8ff}]")
# Python's \s in str patterns (str.isspace); RE2's \s is ASCII-only, so spell it out.
WHITESPACE = (r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}"
              r"\x{205f}\x{3000}]+")


def _py(pattern: str) -> re.Pattern:
    """Compiles an RE2-style pattern with Python's re (``\\x{hhhh}`` becomes ``\\Uhhhhhhhh``)."""
    return re.compile(re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: "\\U%08x" % int(m.group(1), 16), pattern))


_DECIMAL_ENTITY_RE = _py(DECIMAL_ENTITY)
_HTML_TAG_RE = _py(HTML_TAG)
_URL_RE = _py(URL)
_CONTROL_RE = _py(CONTROL)
_WS_RE = _py(WHITESPACE)
# Character mode: one token per character, but runs of Latin letters/digits stay whole ("iphone", "100").
_CHAR_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:[.'][A-Za-z0-9]+)*|\S")


def _decimal_entity(match: re.Match) -> str:
    code = int(match.group(0)[2:-1])
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def unescape_entities(text: str) -> str:
    for entity, char in HTML_ENTITIES:
        text = text.replace(entity, char)
    return _DECIMAL_ENTITY_RE.sub(_decimal_entity, text)


def clean_text(text: str, lowercase: bool = True) -> str:
    """Normalises one text: HTML, URLs, full-width → half-width (NFKC), control characters, case, whitespace.

    Example:
        >>> clean_text("<b>ＡＢＣ１２３</b>　很好！&#183; http://x.cn/a")
        'abc123 很好!·'
    """
    text = unescape_entities(text)
    text = _HTML_TAG_RE.sub(" ", text)
    # NFKC folds full-width Latin, digits and punctuation to ASCII and the ideographic space to ' '.
    text = unicodedata.normalize("NFKC", text)
    text = _URL_RE.sub(" ", text)
    text = _CONTROL_RE.sub("", text)
    if lowercase:
        # Full Unicode case folding ("ß" → "ss"), as tensorflow-text's BertTokenizer does in graph.
        text = text.casefold()
    return _WS_RE.sub(" ", text).strip()


def has_words(text: str) -> bool:
    """Whether a text holds anything to classify: a letter, digit or CJK character once cleaned (not
    only spaces, emoji or punctuation)."""
    return cleaned_has_words(clean_text(text))


def cleaned_has_words(cleaned: str) -> bool:
    """:func:`has_words` of a text that is cleaned already."""
    return any(unicodedata.category(c)[0] in "LN" for c in cleaned)


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
