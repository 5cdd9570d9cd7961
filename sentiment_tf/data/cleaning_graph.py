"""`text.clean_text` as TensorFlow ops, so a SavedModel can take raw strings.

Uses only core TensorFlow string ops plus tensorflow-text's ``NormalizeUTF8``, ``CaseFoldUTF8``
and ``RegexSplitWithOffsets`` — ops that stock TF Serving builds include — and the very patterns
``data/cleaning.py`` defines, so both implementations clean identically (tests/test_bert.py checks them
against each other on the bundled corpus and on mixed-script samples).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from sentiment_tf.data.cleaning import (
    CONTROL,
    DECIMAL_ENTITY,
    HTML_ENTITIES,
    HTML_TAG,
    URL,
    WHITESPACE,
)


def _unescape_decimal(text: tf.Tensor) -> tf.Tensor:
    """``&#183;`` → ``·``: split out the references, decode their code points, join back."""
    pieces = tf_text.regex_split(text, DECIMAL_ENTITY, keep_delim_regex_pattern=DECIMAL_ENTITY)
    flat = pieces.flat_values
    is_ref = tf.strings.regex_full_match(flat, DECIMAL_ENTITY)
    # Keep only the digits of references ("&#183;" → "183"); other pieces become "0" and are unused.
    digits = tf.strings.regex_replace(flat, "[^0-9]", "")
    codes = tf.strings.to_number(tf.where(is_ref, digits, "0"), out_type=tf.int64)
    # Python maps 0, surrogates and out-of-range references to U+FFFD; so do we.
    valid = (codes > 0) & (codes <= 0x10FFFF) & ((codes < 0xD800) | (codes > 0xDFFF))
    codes = tf.cast(tf.where(valid, codes, 0xFFFD), tf.int32)
    chars = tf.strings.unicode_encode(tf.expand_dims(codes, -1), "UTF-8")
    decoded = pieces.with_flat_values(tf.where(is_ref, chars, flat))
    return tf.strings.reduce_join(decoded, axis=-1)


def clean_text_graph(text: tf.Tensor, lowercase: bool = True) -> tf.Tensor:
    """A string tensor of raw texts → cleaned texts, equal to ``text.clean_text`` element by element."""
    for entity, char in HTML_ENTITIES:
        text = tf.strings.regex_replace(text, entity, char.replace("\\", "\\\\"), replace_global=True)
    text = _unescape_decimal(text)
    text = tf.strings.regex_replace(text, HTML_TAG, " ")
    text = tf_text.normalize_utf8(text, "NFKC")
    text = tf.strings.regex_replace(text, URL, " ")
    text = tf.strings.regex_replace(text, CONTROL, "")
    if lowercase:
        text = tf_text.case_fold_utf8(text)
    text = tf.strings.regex_replace(text, WHITESPACE, " ")
    return tf.strings.strip(text)
