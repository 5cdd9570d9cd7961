"""FusedAdam: Keras' Adam arithmetic in one fused kernel, including under tf.distribute."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from sentiment_tf.core.config import ModelConfig
from sentiment_tf.models.fused_adam import FusedAdam
from sentiment_tf.models.lstm import classifier as lstm
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

VOCAB = 200


def _train(optimizer: keras.optimizers.Optimizer, x: np.ndarray, y: np.ndarray, steps: int = 3,
           jit_compile: bool = False) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4, dropout=0.0), VOCAB, 2)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model.get_weights() + [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("repeats, jit_compile", [(False, False), (True, False), (True, True)],
                         ids=["each-token-once", "repeated-tokens", "repeated-tokens-xla"])
def test_same_updates_as_keras_adam(repeats, jit_compile):
    """Weights and both moments equal Keras' Adam after 3 steps, also when tokens repeat in a batch
    (the embedding's sparse gradient, where Keras 3 sums the squares of the repeats), and under
    XLA, which Keras turns on by default when a GPU is present."""
    rng = np.random.default_rng(0)
    if repeats:
        x = rng.integers(2, 12, (16, 6))  # 10 distinct tokens, each ≈ 10 times per batch
    else:
        x = rng.permutation(np.arange(2, 2 + 16 * 6)).reshape(16, 6)
    y = rng.integers(0, 2, 16)
    ours = _train(FusedAdam(1e-2), x, y, jit_compile=jit_compile)
    theirs = _train(keras.optimizers.Adam(1e-2), x, y, jit_compile=jit_compile)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


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
    from sentiment_tf.core.config import ModelConfig
    from sentiment_tf.models.lstm import classifier as lstm
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


def test_layer_schedule_freezes_then_unfreezes_at_lower_rates():
    """ULMFiT's schedule over output → recurrent → embedding: a group not yet unfrozen keeps its
    weights and Adam moments; once unfrozen it moves at lr / decay^depth, which equals plain Adam at
    that rate (the same first step, since its moments were left untouched)."""
    rng = np.random.default_rng(2)
    x, y = rng.integers(2, 12, (16, 6)), rng.integers(0, 2, 16)

    def run(unfreeze: str, decay: float, lr: float, epochs: int) -> tuple[keras.Model, list]:
        keras.utils.set_random_seed(0)
        model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4, dropout=0.0), VOCAB, 2)
        optimizer = FusedAdam(lr)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        start = [w.copy() for w in model.get_weights()]
        model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=lstm.layer_schedule(model, optimizer, unfreeze, decay))
        return model, start

    model, start = run("gradual", 2.0, 1e-2, epochs=2)  # epoch 1: output layer; epoch 2: + the LSTM
    names = [v.path for v in model.weights]
    for name, before, after in zip(names, start, model.get_weights()):
        moved = not np.array_equal(before, after)
        assert moved == (not name.startswith("embedding")), name
    embedding = model.get_layer("embedding").embeddings
    m, v = (slot[model.optimizer._get_variable_index(embedding)] for slot in
            (model.optimizer._momentums, model.optimizer._velocities))
    assert not m.numpy().any() and not v.numpy().any()  # frozen: Adam's moments untouched too

    # One epoch of discriminative rates only: the embedding's first step is Adam's at lr / 4.
    scaled, start = run("all", 2.0, 1e-2, epochs=1)
    keras.utils.set_random_seed(0)
    plain = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4, dropout=0.0), VOCAB, 2)
    plain.compile(optimizer=FusedAdam(1e-2 / 4), loss="sparse_categorical_crossentropy")
    plain.train_on_batch(x, y)
    np.testing.assert_allclose(scaled.get_layer("embedding").get_weights()[0],
                               plain.get_layer("embedding").get_weights()[0], rtol=1e-5, atol=1e-7)
    assert not np.allclose(scaled.get_layer("probabilities").get_weights()[0],
                           plain.get_layer("probabilities").get_weights()[0])
