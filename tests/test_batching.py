"""Length-aware batching: what training sees per pass, and how little it pads."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")


def _ragged(lengths):
    # Row i holds the id i + 1 repeated: a batch row tells which text it is and how long it was.
    return tf.ragged.constant([[i + 1] * int(n) for i, n in enumerate(lengths)], dtype=tf.int64)


def test_training_batches_cover_each_pass_once_with_a_fixed_batch_size():
    from sentiment_tf.models import batching

    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(1, 60, 700), rng.integers(60, 201, 50)])
    labels = tf.constant(np.arange(len(lengths)) * 10, tf.int64)
    ds = batching.training_batches(_ragged(lengths), (labels,), 32, seed=7)
    assert ds.element_spec[0].shape.as_list() == [32, None]  # static batch size: faster steps
    steps = batching.steps_per_pass(len(lengths), 32)
    assert steps == len(lengths) // 32
    it = iter(ds)
    passes = []
    for _ in range(2):
        seen = []
        for _ in range(steps):
            x, y = (t.numpy() for t in next(it))
            text = x[:, 0] - 1
            assert (y == text * 10).all()  # the labels travel with their texts
            assert ((x > 0).sum(axis=1) == lengths[text]).all()  # whole texts, padded with 0 after
            seen += text.tolist()
        assert len(set(seen)) == len(seen) == steps * 32  # no text twice in a pass
        passes.append(seen)
    assert passes[0] != passes[1]  # reshuffled every pass
    again = [(t.numpy()[:, 0] - 1).tolist() for t, _ in batching.training_batches(_ragged(lengths), (labels,), 32,
                                                                            seed=7).take(steps)]
    assert sum(again, []) == passes[0]  # the seed reproduces the run


def test_sorted_windows_pad_less_than_shuffled_batches():
    from sentiment_tf.models import batching

    lengths = np.random.default_rng(1).integers(1, 200, 3200)
    ids = _ragged(lengths)

    def padding(sort_by_length):
        batches = batching.training_batches(ids, (), 64, seed=0, sort_by_length=sort_by_length).take(50)
        cells = [(int(x.shape[0] * x.shape[1]), int((x.numpy() > 0).sum())) for (x,) in batches]
        return 1 - sum(real for _, real in cells) / sum(total for total, _ in cells)

    assert padding(True) < 0.05 < 0.3 < padding(False)


def test_training_batches_small_data_and_bucketed_shapes():
    from sentiment_tf.models import batching

    (x, y), = batching.training_batches(_ragged([3, 5, 2]), (tf.constant([0, 1, 0]),), 64, seed=0).take(1)
    assert x.shape == (3, 5) and sorted(x.numpy()[:, 0]) == [1, 2, 3]  # fewer texts than a batch
    widths = {int(x.shape[1]) for (x,) in batching.training_batches(
        _ragged(np.arange(1, 301)), (), 16, seed=0, bucketed_shapes=True).take(40)}
    assert widths <= set(batching.BUCKET_BOUNDARIES) | {300}


def test_training_pipelines_do_not_autotune():
    """An autotuned iterator's teardown waits up to 10 s for its model thread; Keras tears the
    validation iterator down after every epoch, which doubled some epochs."""
    from sentiment_tf.models.lstm import preprocessor as lstm

    lookup = lstm.make_lookup(["好", "差"])
    ds = lstm.make_dataset(["好 好", "差"], np.array([0, 1]), lookup, 8, 2)
    assert ds.options().autotune.enabled is False
    assert sum(int(x.shape[0]) for x, _ in ds) == 2


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_bucketed_batches_report_their_number(batch_size):
    """Bucketed evaluation batches have a known cardinality, equal to what they yield."""
    from sentiment_tf.models import batching

    lengths = np.random.default_rng(0).integers(0, 200, 300)
    lengths[:5] = [0, 7, 8, 200, 199]  # empty, bucket edges, the maximum
    ids = _ragged(lengths)
    ds = batching.evaluation_batches(ids, (), batch_size, 200)
    batches = list(ds)
    assert int(ds.cardinality()) == len(batches)
    assert sum(len(b) for b in batches) == len(lengths)
