"""Text cleaning: HTML entities, full-width forms, URLs, control characters and whitespace, the same
for both model families (and, written for RE2, inside the BERT export's graph: ``cleaning_graph``)."""

from __future__ import annotations

import logging
import re
import unicodedata

log = logging.getLogger(__name__)


# Every pattern below is written so that Python's `re` and RE2 (TensorFlow's regex engine) read it
# the same way: `cleaning_graph.clean_text_graph` runs these exact patterns inside a SavedModel, and the
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


NOTHING_TO_CLASSIFY = "no letters, digits or CJK characters to classify"


def has_words(text: str) -> bool:
    """Whether a text holds anything to classify: a letter, digit or CJK character once cleaned (not
    only spaces, emoji or punctuation)."""
    return cleaned_has_words(clean_text(text))


def cleaned_has_words(cleaned: str) -> bool:
    """:func:`has_words` of a text that is cleaned already."""
    return any(unicodedata.category(c)[0] in "LN" for c in cleaned)


