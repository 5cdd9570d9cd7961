"""Length-bucketed batching for tf.data, shared by the LSTM and BERT pipelines (plain TensorFlow).

Reviews are short (median ≈ 28 jieba tokens or ≈ 45 characters, with a long tail), so batching
texts of similar length and padding each batch to the top of its bucket, instead of every text to a
global maximum, saves most of the computation. Fixed bucket tops also mean few distinct batch
shapes, hence few tf.function traces (and few XLA compilations on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

BUCKET_BOUNDARIES = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512)


def batch_by_length(ds: tf.data.Dataset, length_fn: Callable[..., tf.Tensor], batch_size: int, max_length: int,
                    bucketing: bool = True, pad_to: int | None = None,
                    padded_shapes=None, padding_values=None) -> tf.data.Dataset:
    """Batches a dataset of variable-length elements.

    Args:
        ds: elements whose first component(s) have a variable leading dimension ≤ ``max_length``.
        length_fn: maps an element to its length (a scalar int32 tensor).
        batch_size: elements per batch.
        max_length: the longest element; the last bucket ends here.
        bucketing: group by length (else pad each batch to its own longest element, in input order).
        pad_to: pad every batch to this fixed length instead (overrides ``bucketing``).
        padded_shapes, padding_values: as for ``tf.data.Dataset.padded_batch`` (default: pad with 0).
    """
    if pad_to is not None:
        shapes = tf.nest.map_structure(
            lambda spec: tf.TensorShape([pad_to] + spec.shape[1:].as_list()) if spec.shape.rank else tf.TensorShape([]),
            ds.element_spec)
        return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=padding_values)
    if not bucketing:
        return ds.padded_batch(batch_size, padded_shapes=padded_shapes, padding_values=padding_values)
    bounds = [b for b in BUCKET_BOUNDARIES if b < max_length] + [max_length + 1]
    return ds.bucket_by_sequence_length(
        element_length_func=length_fn, bucket_boundaries=bounds,
        bucket_batch_sizes=[batch_size] * (len(bounds) + 1), padded_shapes=padded_shapes,
        padding_values=padding_values, pad_to_bucket_boundary=True)


def prefetched(ds: tf.data.Dataset, buffer: int = 2) -> tf.data.Dataset:
    """The pipeline's last step: prefetch a fixed number of batches, with tf.data autotuning off.

    Autotuning runs a model thread per iterator that sleeps up to 10 s between rounds, and
    destroying the iterator waits for that sleep to end (measured: Keras drops the validation
    iterator after every epoch, and 10 of 21 epochs in five runs took 20 s instead of 10 s, idle in
    ``RootDataset::Iterator::~Iterator``). Our pipelines have no parallel stage to tune, so a
    fixed prefetch loses nothing.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(buffer).with_options(options)


def batches_per_pass(lengths, batch_size: int, max_length: int, bucketing: bool = True) -> int:
    """How many batches :func:`batch_by_length` makes from elements of these lengths (one pass).

    Bucketing emits a partial batch per bucket, so a pass has more than ``n / batch_size`` batches;
    training repeats the dataset and needs the exact count as ``steps_per_epoch``.
    """
    import numpy as np

    lengths = np.asarray(lengths)
    if not bucketing:
        return -(-len(lengths) // batch_size)
    bounds = [b for b in BUCKET_BOUNDARIES if b < max_length] + [max_length + 1]
    counts = np.bincount(np.searchsorted(bounds, lengths, side="right"), minlength=len(bounds) + 1)
    return int(sum(-(-int(c) // batch_size) for c in counts if c))
