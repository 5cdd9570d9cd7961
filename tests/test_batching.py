"""Length-bucketed batching: the batch count training uses as steps_per_epoch is exact."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")


@pytest.mark.parametrize("bucketing", [True, False])
def test_batches_per_pass_matches_the_dataset(bucketing):
    from sentiment_tf import batching

    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(1, 60, 500), rng.integers(60, 201, 37), [200, 1, 1]])
    ds = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1] * int(n) for n in lengths]))
    ds = ds.map(lambda x: x.flat_values if isinstance(x, tf.RaggedTensor) else x).shuffle(600, seed=1)
    batched = batching.batch_by_length(ds, lambda x: tf.shape(x)[0], 32, 200, bucketing=bucketing)
    sizes = [int(b.shape[0]) for b in batched]
    assert sum(sizes) == len(lengths)
    assert len(sizes) == batching.batches_per_pass(lengths, 32, 200, bucketing)


def test_training_pipelines_do_not_autotune():
    """An autotuned iterator's teardown waits up to 10 s for its model thread; Keras tears the
    validation iterator down after every epoch, which doubled some epochs."""
    from sentiment_tf.models import lstm

    lookup = lstm.make_lookup(["好", "差"])
    ds = lstm.make_dataset(["好 好", "差"], np.array([0, 1]), lookup, 8, 2, shuffle=True)
    assert ds.options().autotune.enabled is False
    assert sum(int(x.shape[0]) for x, _ in ds) == 2
