"""The LSTM classifier's layers: PackedBidirectional computes what Keras' masked Bidirectional does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_packed_bidirectional_equals_keras_masked_bidirectional(rnn: str, tmp_path: Path) -> None:
    from sentiment_tf.core.config import ModelConfig
    from sentiment_tf.models.lstm import classifier as lstm

    cfg = ModelConfig(rnn=rnn, embedding_dim=16, rnn_units=8, pooling="max")
    packed = lstm.build_model(cfg, vocab_size=50, num_classes=3)
    assert isinstance(packed.get_layer(f"bi{rnn}"), lstm.PackedBidirectional)

    # The reference: the same network with Keras' own Bidirectional, which masks every step.
    ids = keras.Input(shape=(None,), dtype="int64")
    x = keras.layers.Embedding(50, 16, mask_zero=True, name="embedding")(ids)
    cell = keras.layers.LSTM if rnn == "lstm" else keras.layers.GRU
    x = keras.layers.Bidirectional(cell(8, return_sequences=True), name=f"bi{rnn}")(x)
    x = lstm.MaskedGlobalMaxPooling1D(name="max_pool")(x)
    reference = keras.Model(ids, keras.layers.Dense(3, activation="softmax", name="probabilities")(x))
    for layer in reference.layers:
        if layer.weights:  # same weights in the same order
            packed.get_layer(layer.name).set_weights([np.asarray(w) for w in layer.get_weights()])

    rng = np.random.default_rng(0)
    batch = np.zeros((40, 25), np.int64)  # right-padded texts of 1..25 tokens
    for row, n in enumerate(rng.integers(1, 26, len(batch))):
        batch[row, :n] = rng.integers(2, 50, n)
    expected = reference.predict(batch, verbose=0)
    np.testing.assert_allclose(packed.predict(batch, verbose=0), expected, atol=1e-6)
    # Padding after a text changes nothing.
    wider = np.pad(batch, ((0, 0), (0, 7)))
    np.testing.assert_allclose(packed.predict(wider, verbose=0), expected, atol=1e-6)

    packed.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), expected, atol=1e-6)


def test_packed_bidirectional_runs_its_rnns_unmasked(monkeypatch) -> None:
    """The point of the layer: no per-step masking inside the RNNs (it cost ≈ 2 ms of a 37 ms step)."""
    from sentiment_tf.core.config import ModelConfig
    from sentiment_tf.models.lstm import classifier as lstm

    masks = []
    original = keras.layers.LSTM.call

    def call(self, sequences, initial_state=None, mask=None, training=False):
        masks.append(mask)
        return original(self, sequences, initial_state=initial_state, mask=mask, training=training)

    monkeypatch.setattr(keras.layers.LSTM, "call", call)
    model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4, pooling="max"), vocab_size=50, num_classes=2)
    model.predict(np.array([[3, 4, 0, 0], [5, 6, 7, 0]]), verbose=0)
    assert masks and all(mask is None for mask in masks)
