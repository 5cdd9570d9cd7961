"""Forward and backward LSTM language models sharing one embedding (Keras 3): the pretraining of the
LSTM classifier's encoder (ULMFiT / ELMo style).

The two LMs have exactly the classifier's encoder shapes: ``embedding`` [V, E], a forward RNN that
reads a text left to right (its weights become the classifier's forward RNN) and a backward RNN that
reads it reversed (the classifier's backward RNN, which also reads each text reversed). Each predicts
the next token in its reading direction through one output softmax shared by both directions.

Training uses a sampled softmax (``tf.nn.sampled_softmax_loss``, candidates drawn log-uniformly:
the vocabulary is sorted by frequency); evaluation the full softmax, so held-out perplexity is exact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from sentiment_tf.core.config import PretrainConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.models import batching, training
from sentiment_tf.models.fused_adam import FusedAdam
from sentiment_tf.models.lstm.preprocessor import (
    PAD_TOKEN,
    UNK_TOKEN,
    Tokenizer,
    TokenizerSettings,
    build_vocabulary,
    extend_rows,
)

log = logging.getLogger(__name__)

LM_FILE = "lm.json"  # the checkpoint's description: shapes, tokenizer settings, corpus, perplexity
WEIGHTS_FILE = "lm.weights.h5"
VOCAB_FILE = "vocab.txt"


@dataclasses.dataclass(frozen=True)
class LMShape:
    vocab_size: int  # ids: 0 padding, 1 [UNK], then the vocabulary, most frequent first
    embedding_dim: int
    rnn_units: int
    rnn: str = "lstm"
    dropout: float = 0.1
    sampled: int = 1024  # candidates of the sampled softmax per batch (all of them when the vocabulary is smaller)


@keras.saving.register_keras_serializable(package="sentiment_tf")
class BiLanguageModel(keras.Model):
    """Forward + backward next-token LMs over right-padded id batches ``[batch, time]`` (0 = padding)."""

    def __init__(self, shape: LMShape, **kwargs):
        super().__init__(**kwargs)
        self.lm_shape = shape
        cell = keras.layers.LSTM if shape.rnn == "lstm" else keras.layers.GRU
        self.embedding = keras.layers.Embedding(shape.vocab_size, shape.embedding_dim, name="embedding")
        # Whole-token dropout on the embeddings (AWD-LSTM's embedding dropout) and dropout on the RNN outputs.
        self.token_dropout = keras.layers.SpatialDropout1D(shape.dropout, name="token_dropout")
        self.output_dropout = keras.layers.Dropout(shape.dropout, name="output_dropout")
        self.forward_rnn = cell(shape.rnn_units, return_sequences=True, name=shape.rnn)
        self.backward_rnn = cell(shape.rnn_units, return_sequences=True, name=f"backward_{shape.rnn}")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def build(self, input_shape=None):
        self.embedding.build((None, None))
        self.forward_rnn.build((None, None, self.lm_shape.embedding_dim))
        self.backward_rnn.build((None, None, self.lm_shape.embedding_dim))
        self.softmax_w = self.add_weight(name="softmax_w", shape=(self.lm_shape.vocab_size, self.lm_shape.rnn_units),
                                         initializer="glorot_uniform")
        self.softmax_b = self.add_weight(name="softmax_b", shape=(self.lm_shape.vocab_size,), initializer="zeros")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def hidden_and_targets(self, ids: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """RNN outputs at every real position that has a next token, and those next tokens, for both
        directions: ``[n, units]`` and ``[n]``."""
        mask = ids > 0
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        emb = self.token_dropout(self.embedding(ids), training=training)
        reversed_ids = tf.reverse_sequence(ids, lengths, seq_axis=1, batch_axis=0)
        reversed_emb = tf.reverse_sequence(emb, lengths, seq_axis=1, batch_axis=0)
        hidden, targets = [], []
        # Like the classifier's PackedBidirectional: both RNNs run unmasked over right padding,
        # which only changes outputs at padded steps (never used here).
        for rnn, x, y in ((self.forward_rnn, emb, ids), (self.backward_rnn, reversed_emb, reversed_ids)):
            h = self.output_dropout(rnn(x[:, :-1], training=training), training=training)
            keep = y[:, 1:] > 0
            hidden.append(tf.boolean_mask(h, keep))
            targets.append(tf.boolean_mask(y[:, 1:], keep))
        return tf.concat(hidden, 0), tf.concat(targets, 0)

    def sampled_loss(self, hidden: tf.Tensor, targets: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        if self.lm_shape.sampled >= self.lm_shape.vocab_size:
            return self.full_loss(hidden, targets)
        losses = tf.nn.sampled_softmax_loss(
            weights=self.softmax_w, biases=self.softmax_b, labels=tf.expand_dims(targets, -1),
            inputs=hidden, num_sampled=self.lm_shape.sampled, num_classes=self.lm_shape.vocab_size,
            sampled_values=log_uniform_candidates(targets, self.lm_shape.sampled, self.lm_shape.vocab_size, step))
        return _mean(losses)

    def full_loss(self, hidden: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        logits = tf.matmul(hidden, self.softmax_w, transpose_b=True) + self.softmax_b
        return _mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))

    def call(self, ids, training=False):
        hidden, targets = self.hidden_and_targets(ids, training)
        return self.full_loss(hidden, targets)

    def train_step(self, data):
        ids = data[0] if isinstance(data, tuple) else data
        # Under tf.distribute the optimizer sums the replicas' gradients: each contributes its share.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            hidden, targets = self.hidden_and_targets(ids, training=True)
            loss = self.sampled_loss(hidden, targets, self.optimizer.iterations)
            share = loss / replicas
        grads = tape.gradient(share, self.trainable_variables)
        # Embedding and softmax gradients are IndexedSlices: clip by the global norm like AWD-LSTM
        # (on several replicas, each share to 1/replicas, before the sum).
        grads, _ = tf.clip_by_global_norm(grads, 1.0 / replicas)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        ids = data[0] if isinstance(data, tuple) else data
        hidden, targets = self.hidden_and_targets(ids, training=False)
        loss = self.full_loss(hidden, targets)
        self.loss_tracker.update_state(loss, sample_weight=tf.cast(tf.shape(targets)[0], tf.float32))
        return {"loss": self.loss_tracker.result()}

    def get_config(self):
        return {**super().get_config(), "shape": dataclasses.asdict(self.lm_shape)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(LMShape(**config.pop("shape")), **config)


def log_uniform_candidates(targets: tf.Tensor, k: int, n: int, step: tf.Tensor) -> tuple:
    """``tf.nn.log_uniform_candidate_sampler``'s distribution (Zipf-like: id ``c`` has probability
    log((c + 2) / (c + 1)) / log(n + 1)), drawn statelessly from the step number, so a resumed run
    samples what the uninterrupted one did."""
    seed = tf.stack([tf.constant(17, tf.int64), tf.cast(step, tf.int64)])
    u = tf.random.stateless_uniform([k], seed=seed, dtype=tf.float64)
    log_range = tf.math.log(tf.constant(n + 1.0, tf.float64))
    sampled = tf.minimum(tf.cast(tf.floor(tf.exp(u * log_range)), tf.int64) - 1, n - 1)

    def expected(ids: tf.Tensor) -> tf.Tensor:
        c = tf.cast(ids, tf.float64)
        return tf.cast(k * tf.math.log((c + 2.0) / (c + 1.0)) / log_range, tf.float32)

    true = tf.cast(tf.expand_dims(targets, -1), tf.int64)
    return sampled, expected(true), expected(sampled)


def build(shape: LMShape) -> BiLanguageModel:
    model = BiLanguageModel(shape, name="bi_language_model")
    model.build()
    return model


def _mean(losses: tf.Tensor) -> tf.Tensor:
    """The mean, 0 for none: a worker's share of a last, small batch may be empty."""
    return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), losses.dtype))


def perplexity(loss: float) -> float:
    return float(math.exp(min(loss, 50.0)))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def write_checkpoint(model: BiLanguageModel, vocabulary: list[str], description: dict, directory: Path) -> None:
    """Into ``directory`` (a temporary one the caller renames into place): weights, vocabulary, description."""
    model.save_weights(str(directory / WEIGHTS_FILE))
    (directory / VOCAB_FILE).write_text("\n".join([PAD_TOKEN, UNK_TOKEN, *vocabulary]) + "\n", encoding="utf-8")
    (directory / LM_FILE).write_text(json.dumps({**description, "shape": dataclasses.asdict(model.lm_shape)},
                                                ensure_ascii=False, indent=2), encoding="utf-8")


@dataclasses.dataclass
class Checkpoint:
    """A language-model directory written by ``pretrain --model lstm``."""

    path: Path
    description: dict
    vocabulary: list[str]  # without padding and [UNK]

    @property
    def shape(self) -> LMShape:
        return LMShape(**self.description["shape"])

    def load(self) -> BiLanguageModel:
        model = build(self.shape)
        model.load_weights(str(self.path / WEIGHTS_FILE))
        return model


def read_checkpoint(path: str | Path, option: str = "--pretrained") -> Checkpoint:
    directory = Path(path)
    missing = [name for name in (LM_FILE, WEIGHTS_FILE, VOCAB_FILE) if not (directory / name).is_file()]
    if missing:
        raise UserError(f"{option} {path}: not an LSTM language model directory (no {', '.join(missing)}); pass a "
                        "directory written by `python -m sentiment_tf.pretrain --model lstm`")
    try:
        description = json.loads((directory / LM_FILE).read_text(encoding="utf-8"))
        LMShape(**description["shape"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{option} {path}: {LM_FILE} is damaged ({err})") from None
    lines = (directory / VOCAB_FILE).read_text(encoding="utf-8").split("\n")
    vocabulary = [t for t in lines[2:] if t]
    if len(vocabulary) + 2 != description["shape"]["vocab_size"]:
        raise UserError(f"{option} {path}: {VOCAB_FILE} holds {len(vocabulary) + 2} entries, the weights "
                        f"{description['shape']['vocab_size']}; the directory is damaged")
    return Checkpoint(directory, description, vocabulary)


def initialise_classifier(classifier: keras.Model, lm: BiLanguageModel, lm_vocab_size: int) -> None:
    """The classifier's embedding rows for the LM's vocabulary and both RNN directions take the LM's
    weights; rows of words the LM never saw start at the mean of its rows (as vocabulary growth does)."""
    layer = classifier.get_layer("embedding")
    layer.set_weights([extend_rows(lm.embedding.get_weights()[0], layer.get_weights()[0].shape[0] - lm_vocab_size)])
    encoder = next(lay for lay in classifier.layers if hasattr(lay, "forward_layer") or isinstance(
        lay, (keras.layers.LSTM, keras.layers.GRU)))
    if hasattr(encoder, "forward_layer"):
        encoder.forward_layer.set_weights(lm.forward_rnn.get_weights())
        encoder.backward_layer.set_weights(lm.backward_rnn.get_weights())
    else:
        encoder.set_weights(lm.forward_rnn.get_weights())


# ---------------------------------------------------------------------------------------------
# Pretraining (python -m sentiment_tf.pretrain --model lstm)


def token_ids(segmented: list[str], vocabulary: list[str], chunk: int) -> tf.RaggedTensor:
    """Ids per text (0 padding, 1 [UNK]); texts longer than ``chunk`` tokens become several sequences."""
    index = {tok: i + 2 for i, tok in enumerate(vocabulary)}
    flat: list[int] = []
    lengths: list[int] = []
    for line in segmented:
        ids = [index.get(tok, 1) for tok in line.split(" ") if tok]
        for i in range(0, len(ids), chunk):
            piece = ids[i:i + chunk]
            if len(piece) >= 2:  # a sequence needs a token to predict
                flat.extend(piece)
                lengths.append(len(piece))
    if not lengths:
        flat, lengths = [1, 1], [2]
    # From flat values and row lengths: tf.ragged.constant on nested lists takes minutes for millions of tokens.
    return tf.RaggedTensor.from_row_lengths(np.asarray(flat, np.int64), np.asarray(lengths, np.int64))


def grow(model: BiLanguageModel, extra: int) -> BiLanguageModel:
    """The same LM with ``extra`` new tokens: embedding and softmax rows at the mean of the trained rows."""
    grown = build(dataclasses.replace(model.lm_shape, vocab_size=model.lm_shape.vocab_size + extra))
    grown.embedding.set_weights([extend_rows(model.embedding.get_weights()[0], extra)])
    grown.forward_rnn.set_weights(model.forward_rnn.get_weights())
    grown.backward_rnn.set_weights(model.backward_rnn.get_weights())
    grown.softmax_w.assign(extend_rows(model.softmax_w.numpy(), extra))
    grown.softmax_b.assign(np.concatenate([model.softmax_b.numpy(), np.full(extra, model.softmax_b.numpy()[2:].min())]))
    return grown


def corpus_vocabulary(cfg: Any, start: Checkpoint | None, train_texts: list[str]) -> tuple[Any, list[str], list[str]]:
    """The tokenizer (new, or the ``--from`` LM's, checked against its recorded settings), the
    vocabulary (the corpus' tokens, or the LM's followed by the corpus' frequent tokens it lacks) and
    the segmented texts."""
    if start is not None:
        settings = TokenizerSettings(**start.description["tokenizer"])
        if settings.lowercase != cfg.lowercase:
            raise UserError(f"--from {cfg.from_checkpoint} was pretrained with lowercase={settings.lowercase}; "
                            f"pass {'--lowercase' if settings.lowercase else '--no-lowercase'}")
        user_dict = start.path / "user_dict.txt"
        tokenizer = Tokenizer(settings.mode, settings.hmm, settings.lowercase,
                              user_dict if user_dict.is_file() else None)
        tokenizer.ensure_matches(settings)
    else:
        tokenizer = Tokenizer(cfg.tokenizer, cfg.hmm, cfg.lowercase, cfg.user_dict)
    segmented = tokenizer.segment(train_texts, cleaned=True)
    found = build_vocabulary(segmented, cfg.min_frequency, cfg.max_vocab)
    if start is None:
        return tokenizer, found, segmented
    known = set(start.vocabulary)
    new = [t for t in found if t not in known][: max(0, cfg.max_vocab - len(start.vocabulary) - 2)]
    log.info("language model from %s: %d tokens, %d new from the corpus", start.path, len(start.vocabulary), len(new))
    return tokenizer, start.vocabulary + new, segmented


def pretrain(cfg: Any, train_texts: list[str], held_out: list[str], run_dir: Path, out_dir: Path) -> dict:
    """Vocabulary and tokenizer (new, or the ``--from`` LM's, grown by the corpus' frequent new tokens),
    ``model.fit`` with per-epoch backups, held-out perplexity before and after; writes the checkpoint
    files into ``out_dir``. Returns the summary."""
    import shutil

    start = read_checkpoint(cfg.from_checkpoint, "--from") if cfg.from_checkpoint else None
    tokenizer, vocabulary, segmented = corpus_vocabulary(cfg, start, train_texts)
    train_ids = token_ids(segmented, vocabulary, cfg.max_length)
    held_ids = token_ids(tokenizer.segment(held_out, cleaned=True), vocabulary, cfg.max_length)
    tokens = int(train_ids.flat_values.shape[0])
    unk = float(tf.reduce_mean(tf.cast(train_ids.flat_values == 1, tf.float32)))
    log.info("%d training sequences, %d tokens ([UNK] %.2f%%); %d held-out sequences", int(train_ids.nrows()),
             tokens, 100 * unk, int(held_ids.nrows()) if held_out else 0)

    keras.utils.set_random_seed(cfg.seed)
    shape = LMShape(vocab_size=len(vocabulary) + 2, embedding_dim=cfg.embedding_dim, rnn_units=cfg.rnn_units,
                    rnn=cfg.rnn, dropout=cfg.lm_dropout, sampled=cfg.sampled)
    with training.distribution_strategy(tf).scope():
        if start is not None:
            model = start.load()
            if len(vocabulary) > len(start.vocabulary):
                model = grow(model, len(vocabulary) - len(start.vocabulary))
        else:
            model = build(shape)
        model.compile(optimizer=FusedAdam(cfg.learning_rate))
        training.log_batch(tf.distribute.get_strategy(), cfg.batch_size, cfg.learning_rate)
    held_ds = (training.shard_by_data(tf, batching.prefetched(
        batching.evaluation_batches(held_ids, (), 256, cfg.max_length, True))) if held_out else None)
    before = _evaluate(model, held_ds)
    train_ds = training.shard_by_data(tf, batching.prefetched(batching.training_batches(
        train_ids, (), cfg.batch_size, cfg.seed, first_pass=training.epochs_done(run_dir))))
    if held_ds is not None:
        # The held-out loss is the validation: the best epoch's weights are kept (no early stop).
        callbacks = training.standard_callbacks(keras.callbacks, run_dir, patience=cfg.epochs, weights_only=True)
    else:
        callbacks = [keras.callbacks.BackupAndRestore(backup_dir=str(training.backup_dir(keras.callbacks, run_dir))),
                     keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"))]
    history = None
    if cfg.epochs:
        history = model.fit(train_ds, epochs=cfg.epochs, steps_per_epoch=batching.steps_per_pass(
            int(train_ids.nrows()), cfg.batch_size), validation_data=held_ds, callbacks=callbacks, shuffle=False,
            verbose=2 if not sys.stdout.isatty() else "auto")
    after = _evaluate(model, held_ds)
    training.log_weights_digest(model)
    description = {
        "tokenizer": dataclasses.asdict(tokenizer.settings),
        "corpus": {"files": list(cfg.corpus), "train_sequences": int(train_ids.nrows()), "train_tokens": tokens,
                   "unk_share": unk, "held_out_texts": len(held_out)},
        "from": str(start.path) if start is not None else None,
        "epochs": cfg.epochs,
        "held_out_before": before, "held_out_after": after,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    if tokenizer.user_dict:
        shutil.copyfile(tokenizer.user_dict, out_dir / "user_dict.txt")
    write_checkpoint(model, vocabulary, description, out_dir)
    return {"held_out_before": before, "held_out_after": after, "vocab_size": len(vocabulary) + 2,
            "train_tokens": tokens,
            "history": training.fitted_history(callbacks) if held_ds is not None else training.history_dict(history)}


def _evaluate(model: BiLanguageModel, ds: Any) -> dict[str, float] | None:
    if ds is None:
        return None
    loss = float(model.evaluate(ds, verbose=0, return_dict=True)["loss"])
    return {"loss": loss, "perplexity": perplexity(loss)}


class LSTMPretrainer:
    """What `pretrain --model lstm` runs: forward and backward LMs with the classifier's encoder shapes."""

    loss_name = "next-token"

    def check(self, cfg: PretrainConfig) -> PretrainConfig:
        """Refuses what cannot run before anything is written; returns ``cfg`` with the LSTM's defaults filled."""
        if cfg.from_checkpoint:
            read_checkpoint(cfg.from_checkpoint, "--from")
        elif cfg.user_dict and not Path(cfg.user_dict).is_file():
            raise UserError(f"--user-dict {cfg.user_dict}: file not found")
        return dataclasses.replace(cfg, learning_rate=cfg.learning_rate or 2e-3)  # recorded concretely

    def run(self, cfg: PretrainConfig, train_texts: list[str], held_out: list[str], run_dir: Path,
            out_dir: Path) -> dict:
        return pretrain(cfg, train_texts, held_out, run_dir, out_dir)


PRETRAINER = LSTMPretrainer()
