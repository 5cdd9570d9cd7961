"""Embedding → (Bi)LSTM/GRU → Dropout → Dense softmax, in Keras 3, plus its tf.data input pipeline.

The model itself takes integer token ids; the string → id lookup is a Keras ``StringLookup`` shared
by the training pipeline and the exported serving function, so both map tokens identically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import keras

from sentiment_tf.config import ModelConfig
from sentiment_tf.text import PAD_TOKEN, UNK_TOKEN

# Length buckets: reviews are short (median ≈ 28 jieba tokens), so padding each batch only to its
# bucket's longest text instead of a global maximum saves most of the recurrent computation.
BUCKET_BOUNDARIES = (8, 16, 24, 32, 48, 64, 96, 128, 160, 256, 384)


def make_lookup(vocabulary: list[str]) -> keras.layers.StringLookup:
    """Token → id: 0 is padding (the mask), 1 is ``[UNK]``, then ``vocabulary`` in order."""
    return keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=PAD_TOKEN,
                                     oov_token=UNK_TOKEN, num_oov_indices=1, output_mode="int")


def segmented_to_ids(segmented: tf.Tensor, lookup: keras.layers.StringLookup, max_tokens: int) -> tf.RaggedTensor:
    """A batch of space-joined token strings → ragged int64 ids, truncated to ``max_tokens``.

    A text with no tokens becomes a single ``[UNK]``, so every row has length ≥ 1 (recurrent layers
    and cuDNN need at least one unmasked step).
    """
    segmented = tf.where(tf.strings.length(tf.strings.strip(segmented)) > 0, segmented, UNK_TOKEN)
    tokens = tf.strings.split(segmented, sep=" ")
    tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)  # double spaces
    tokens = tokens[:, :max_tokens]
    return tf.ragged.map_flat_values(lookup, tokens)


def make_dataset(segmented: list[str], labels: np.ndarray | None, lookup: keras.layers.StringLookup,
                 max_tokens: int, batch_size: int, shuffle: bool = False, bucketing: bool = True,
                 pad_to: int | None = None, seed: int = 0, sample_weights: np.ndarray | None = None) -> tf.data.Dataset:
    """Batches of (ids, labels[, weights]) padded per batch (or per length bucket, or to ``pad_to``)."""
    ids = segmented_to_ids(tf.constant(segmented, dtype=tf.string), lookup, max_tokens)
    parts: tuple = (ids,)
    if labels is not None:
        parts += (tf.constant(labels, dtype=tf.int64),)
    if sample_weights is not None:
        parts += (tf.constant(sample_weights, dtype=tf.float32),)
    ds = tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else parts[0])
    # Slicing a ragged batch yields rank-1 "ragged" elements; batching wants plain tensors.
    ds = ds.map(lambda *xs: (_dense(xs[0]),) + xs[1:] if len(xs) > 1 else _dense(xs[0]))
    if shuffle:
        ds = ds.shuffle(len(segmented), seed=seed, reshuffle_each_iteration=True)
    first = (lambda *xs: xs[0]) if len(parts) > 1 else (lambda x: x)
    if pad_to is not None:
        shapes = ((pad_to,),) + ((),) * (len(parts) - 1)
        ds = ds.padded_batch(batch_size, padded_shapes=shapes if len(parts) > 1 else shapes[0])
    elif bucketing:
        bounds = [b for b in BUCKET_BOUNDARIES if b < max_tokens] + [max_tokens + 1]
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda *xs: tf.shape(first(*xs))[0],
            bucket_boundaries=bounds, bucket_batch_sizes=[batch_size] * (len(bounds) + 1))
    else:
        ds = ds.padded_batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def _dense(x):
    return x.flat_values if isinstance(x, tf.RaggedTensor) else x


def build_model(cfg: ModelConfig, vocab_size: int, num_classes: int) -> keras.Model:
    """The classifier on token ids (0 = padding, masked).

    Default LSTM/GRU settings (tanh, sigmoid, no recurrent dropout, right-padded mask) keep the layer
    eligible for the fused cuDNN kernel on a GPU.

    Example:
        >>> model = build_model(ModelConfig(), vocab_size=1000, num_classes=2)
        >>> model.output_shape
        (None, 2)
    """
    ids = keras.Input(shape=(None,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(vocab_size, cfg.embedding_dim, mask_zero=True, name="embedding")(ids)
    x = keras.layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
    cell = keras.layers.LSTM if cfg.rnn == "lstm" else keras.layers.GRU
    rnn = cell(cfg.rnn_units, name=cfg.rnn)
    if cfg.bidirectional:
        rnn = keras.layers.Bidirectional(rnn, name=f"bi{cfg.rnn}")
    x = rnn(x)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    # float32 output even under mixed precision, so softmax and the loss stay numerically stable.
    probs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(ids, probs, name=f"{'bi' if cfg.bidirectional else ''}{cfg.rnn}_classifier")


# The serving signature: TF Serving clients send jieba-segmented, space-joined text (segmentation
# cannot run inside a graph) and get probabilities, the label id and the label name back.
SERVING_INPUT = "text"


def write_saved_model(model: keras.Model, lookup: keras.layers.StringLookup, labels: list[str],
                      max_tokens: int, path: str | Path) -> None:
    """Writes a SavedModel whose ``serving_default`` maps segmented strings to predictions."""
    label_names = tf.constant(labels, dtype=tf.string)

    def serve(text: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = segmented_to_ids(text, lookup, max_tokens).to_tensor(default_value=0)
        probs = model(ids, training=False)
        label_id = tf.argmax(probs, axis=-1)
        return {"probabilities": probs, "label_id": label_id, "label": tf.gather(label_names, label_id)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    if not lookup.built:
        lookup(tf.constant([UNK_TOKEN]))  # ExportArchive only tracks built layers
    archive.track(lookup)  # its hash table must be saved with the graph
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec(shape=(None,), dtype=tf.string, name=SERVING_INPUT)])
    archive.write_out(str(path), verbose=False)
