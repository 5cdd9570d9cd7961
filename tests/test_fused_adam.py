"""FusedAdam: Keras' Adam arithmetic in one fused kernel, including under tf.distribute."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf

from sentiment_tf.config import ModelConfig
from sentiment_tf.models import lstm
from sentiment_tf.models.fused_adam import FusedAdam

from conftest import REPO

VOCAB = 200


def _train(optimizer: keras.optimizers.Optimizer, x: np.ndarray, y: np.ndarray, steps: int = 3) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4, dropout=0.0), VOCAB, 2)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model.get_weights() + [v.numpy() for v in optimizer.variables]


def test_same_updates_as_keras_adam_when_no_token_repeats_in_a_batch():
    rng = np.random.default_rng(0)
    x = rng.permutation(np.arange(2, 2 + 16 * 6)).reshape(16, 6)  # every token once per batch
    y = rng.integers(0, 2, 16)
    ours, theirs = _train(FusedAdam(1e-2), x, y), _train(keras.optimizers.Adam(1e-2), x, y)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_repeated_tokens_sum_their_gradients_before_squaring():
    """The one documented difference from Keras 3: v gets (Σ g)², not Σ g², for a repeated token."""
    x, y = np.array([[5, 5, 5, 7], [5, 9, 0, 0]]), np.array([0, 1])
    velocity = {}
    for optimizer in (FusedAdam(1e-2), keras.optimizers.Adam(1e-2)):
        keras.utils.set_random_seed(0)
        model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4, dropout=0.0), VOCAB, 2)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        table = model.get_layer("embedding").embeddings
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
        grad = tf.convert_to_tensor(tape.gradient(loss, table.value)).numpy()  # summed over the 4 occurrences
        before = table.numpy().copy()
        model.train_on_batch(x, y)
        velocity[type(optimizer)] = optimizer._velocities[optimizer._get_variable_index(table)].numpy()
        np.testing.assert_array_equal(table.numpy()[100], before[100])  # a token not in the batch stays put
    b2 = optimizer.beta_2
    ours, keras_v = velocity[FusedAdam], velocity[keras.optimizers.Adam]
    np.testing.assert_allclose(ours[[7, 9]], keras_v[[7, 9]], rtol=1e-4)  # tokens seen once: the same
    np.testing.assert_allclose(ours[5], (1 - b2) * grad[5] ** 2, rtol=1e-3)  # Adam on the summed gradient
    assert np.abs(keras_v[5] / ours[5] - 1).max() > 0.01  # Keras 3 sums the squares instead


def test_saved_model_keeps_optimizer_and_resumes(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.integers(2, VOCAB, (16, 6)), rng.integers(0, 2, 16)
    model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4), VOCAB, 2)
    model.compile(optimizer=FusedAdam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, FusedAdam)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded.fit(x, y, epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations) == 3


MIRRORED = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from sentiment_tf.config import ModelConfig
    from sentiment_tf.models import lstm
    from sentiment_tf.models.fused_adam import FusedAdam

    rng = np.random.default_rng(2)
    x, y = rng.integers(2, 200, (16, 6)), rng.integers(0, 2, 16)

    def train(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4, dropout=0.0), 200, 2)
            model.compile(optimizer=FusedAdam(1e-2), loss="sparse_categorical_crossentropy")
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        model.fit(data, epochs=3, verbose=0)
        return model.get_weights()

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    one, two = train(tf.distribute.get_strategy()), train(mirrored)
    print(max(float(np.abs(a - b).max()) for a, b in zip(one, two)))
""")


def test_mirrored_strategy_over_two_devices_matches_one_device():
    """The GPU code path (MirroredStrategy with several devices) on two logical CPUs."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", MIRRORED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5
