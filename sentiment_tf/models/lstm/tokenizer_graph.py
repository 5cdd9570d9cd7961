"""The LSTM's whole tokenizer as TensorFlow ops — cleaning, jieba words (``segmentation_graph``) or
characters, stopwords — equal token for token to :class:`~sentiment_tf.models.lstm.preprocessor.Tokenizer`,
so the SavedModel takes raw text."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from sentiment_tf.data.cleaning_graph import clean_text_graph
from sentiment_tf.models.lstm.segmentation_graph import JiebaGraph

# preprocessor._CHAR_TOKEN_RE for RE2: what is between its matches, once cleaned, is single spaces.
CHAR_TOKEN = r"[A-Za-z0-9]+(?:[.'][A-Za-z0-9]+)*|\S"


class TokenizerGraph(tf.Module):
    """Raw strings → ragged tokens, as ``Tokenizer.tokenize`` gives them.

    Args:
        tokenizer: the Python :class:`Tokenizer` to copy (mode, HMM, case, user dictionary, stopwords).
    """

    def __init__(self, tokenizer):
        super().__init__(name="tokenizer")
        self.lowercase = tokenizer.lowercase
        self.jieba = None
        if tokenizer.mode == "word":
            self.jieba = JiebaGraph(tokenizer.jieba, tokenizer.hmm, tokenizer.force_split)
        self.stopwords = None
        if tokenizer.stopwords:
            words = sorted(tokenizer.stopwords)
            self.stopwords = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(words, tf.ones([len(words)], tf.int64)), 0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        # Traced once and shared by every signature that calls it: one copy of the graph in the export.
        cleaned = clean_text_graph(texts, self.lowercase)
        if self.jieba is not None:
            tokens = self.jieba(cleaned)
        else:
            pieces = tf_text.regex_split(cleaned, CHAR_TOKEN, keep_delim_regex_pattern=CHAR_TOKEN)
            tokens = tf.ragged.boolean_mask(pieces, tf.not_equal(pieces, " "))
        if self.stopwords is not None:
            tokens = tf.ragged.boolean_mask(tokens, tf.equal(self.stopwords.lookup(tokens), 0))
        return tokens
