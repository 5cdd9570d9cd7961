"""Length-aware batching for tf.data, shared by the LSTM and BERT pipelines (plain TensorFlow).

Reviews are short (median ≈ 28 jieba tokens or ≈ 45 characters, with a long tail), so batching
texts of similar length, instead of padding every text to a global maximum, saves most of the
computation. Training uses :func:`training_batches` (length-sorted windows, fixed batch size);
evaluation uses :func:`evaluation_batches` (fixed length buckets, or input order for prediction).
Fixed bucket tops mean few distinct batch shapes, hence few XLA compilations on a GPU.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

BUCKET_BOUNDARIES = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512)


def evaluation_batches(ids: tf.RaggedTensor, columns: tuple[tf.Tensor, ...], batch_size: int, max_length: int,
                       bucketing: bool = True, pad_value: int = 0) -> tf.data.Dataset:
    """Batches for validation, evaluation and prediction: padded ids, or ``(padded ids, *columns)``.

    Args:
        ids: one row of token ids per text, each row at most ``max_length`` long.
        columns: per-text tensors batched alongside (the labels); may be empty.
        bucketing: group texts into fixed length buckets, each batch padded to its bucket's top;
            else keep the input order (prediction), each batch padded to its longest text.
        pad_value: the id padding is filled with.

    The batches declare how many they are (bucketed ones too, counted from the texts' lengths).
    Keras needs that for validation data: without it, the first epoch's validation ends in a "Your
    input ran out of data; interrupting training" warning, although nothing is wrong.
    """
    def plain(x):  # slicing a ragged tensor yields rank-1 "ragged" elements; batching wants tensors
        return x.flat_values if isinstance(x, tf.RaggedTensor) else x

    ds = tf.data.Dataset.from_tensor_slices((ids, *columns) if columns else ids)
    ds = ds.map(lambda x, *rest: (plain(x), *rest) if rest else plain(x))
    pad = tf.constant(pad_value, ids.dtype)
    padding_values = (pad, *(tf.zeros([], c.dtype) for c in columns)) if columns else pad
    if not bucketing:
        return ds.padded_batch(batch_size, padding_values=padding_values)
    bounds = [b for b in BUCKET_BOUNDARIES if b < max_length] + [max_length + 1]
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda x, *rest: tf.shape(x)[0], bucket_boundaries=bounds,
        bucket_batch_sizes=[batch_size] * (len(bounds) + 1), padding_values=padding_values,
        pad_to_bucket_boundary=True)
    # Bucket i holds lengths in [bounds[i-1], bounds[i]); each bucket ends with a partial batch.
    per_bucket = np.bincount(np.searchsorted(bounds, ids.row_lengths().numpy(), side="right"),
                             minlength=len(bounds) + 1)
    return ds.apply(tf.data.experimental.assert_cardinality(int(np.ceil(per_bucket / batch_size).sum())))


def prefetched(ds: tf.data.Dataset, buffer: int = 2) -> tf.data.Dataset:
    """The pipeline's last step: prefetch a fixed number of batches, with tf.data autotuning off.

    Autotuning's model thread sleeps up to 10 s between rounds and destroying an iterator waits for
    it, which Keras does for the validation iterator every epoch (bench/README.md, "Design
    measurements"); our pipelines have no parallel stage to tune, so a fixed prefetch loses nothing.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(buffer).with_options(options)


# Batches per sorted window in training_batches (Hugging Face's group_by_length uses 50 too).
SORT_WINDOW = 50


def steps_per_pass(n: int, batch_size: int) -> int:
    """Batches :func:`training_batches` makes per pass over ``n`` texts (its ``steps_per_epoch``)."""
    return max(n // batch_size, 1)


def training_batches(ids: tf.RaggedTensor, columns: tuple[tf.Tensor, ...], batch_size: int, seed: int,
                     sort_by_length: bool = True, pad_value: int = 0,
                     bucketed_shapes: bool = False, first_pass: int = 0) -> tf.data.Dataset:
    """Endless training batches ``(padded ids, *columns)`` of exactly ``batch_size`` texts,
    :func:`steps_per_pass` per pass (end the pipeline with :func:`prefetched`).

    Each pass shuffles the texts, sets aside the ``n % batch_size`` that do not fill a batch (other
    ones each pass), sorts every window of ``SORT_WINDOW`` batches of the rest by length, cuts them
    into batches and shuffles the batch order: Hugging Face Trainer's ``group_by_length`` with a
    shuffled batch order. A batch holds texts of nearly equal length, so little padding is computed,
    the work is one gather per batch, and the static batch dimension makes steps faster; accuracy is
    the same within noise (bench/README.md, "Design measurements").

    Args:
        ids: one row of token ids per text.
        columns: per-text tensors batched alongside (the labels).
        seed: the pass ``k`` is shuffled with ``(seed, k)``, so a run's batches are reproducible.
        sort_by_length: False batches the shuffled texts as they come (``--no-bucketing``).
        bucketed_shapes: pad to the next of ``BUCKET_BOUNDARIES`` (few distinct shapes, for XLA)
            instead of to the batch's longest text.
        first_pass: the pass to start from (a resumed run's finished epochs), so its batches are the
            uninterrupted run's.
    """
    n = int(ids.nrows())
    lengths = ids.row_lengths().numpy()
    longest = int(lengths.max(initial=1))
    size = min(batch_size, n)
    used = n // size * size
    widths = tf.constant([b for b in BUCKET_BOUNDARIES if b < longest] + [longest], tf.int64)

    def one_pass(k):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed, k]))
        order = order[:used]
        if sort_by_length:
            # Sort by (window, length); the stable sort keeps the shuffled order among equal keys.
            key = tf.range(used, dtype=tf.int64) // (SORT_WINDOW * size) * (longest + 1) + tf.gather(lengths, order)
            order = tf.gather(order, tf.argsort(key, stable=True))
        starts = tf.random.experimental.stateless_shuffle(tf.range(0, used, size, dtype=tf.int64),
                                                          seed=tf.stack([seed, -1 - k]))
        return tf.data.Dataset.from_tensor_slices(starts).map(lambda start: order[start:start + size])

    def gather(index):
        rows = tf.gather(ids, index)
        width = tf.reduce_max(rows.row_lengths())
        if bucketed_shapes:
            width = widths[tf.searchsorted(widths, tf.reshape(width, [1]))[0]]
        padded = rows.to_tensor(default_value=tf.cast(pad_value, ids.dtype), shape=tf.stack([size, width]))
        padded.set_shape([size, None])
        others = [tf.ensure_shape(tf.gather(c, index), [size] + c.shape[1:]) for c in columns]
        return (padded, *others)

    return tf.data.Dataset.range(first_pass, 2**62).flat_map(one_pass).map(gather)
