"""Embedding → (Bi)LSTM/GRU → Dropout → Dense softmax in Keras 3: build, fit, export, load, adapt.

The model itself takes integer token ids; text → ids is the family's one :class:`Preprocessor`
(``preprocessor.py``), shared by the training pipeline and the exported serving function, so both
map tokens identically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from sentiment_tf.core import atomic
from sentiment_tf.core.config import (
    AdaptConfig,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
)
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.splits import Splits
from sentiment_tf.evaluation import calibration
from sentiment_tf.evaluation.attributions import Explanation, integrated_gradients
from sentiment_tf.evaluation.drift import Tokens
from sentiment_tf.export import model_card
from sentiment_tf.export import versions as export_lib
from sentiment_tf.export.versions import (
    META_DIR,
)
from sentiment_tf.models import batching, training
from sentiment_tf.models.distillation import SoftTargets
from sentiment_tf.models.fused_adam import FusedAdam
from sentiment_tf.models.lstm import language_model as lstm_lm
from sentiment_tf.models.lstm.preprocessor import (
    UNK_TOKEN,
    Preprocessor,
    Tokenizer,
    TokenizerSettings,
    build_vocabulary,
    extend_rows,
    tokens_to_ids,
)

log = logging.getLogger(__name__)



@keras.saving.register_keras_serializable(package="sentiment_tf")
class MaskedGlobalMaxPooling1D(keras.layers.Layer):
    """Max over time of the unmasked steps (Keras' GlobalMaxPooling1D ignores the mask, so padding
    would take part in the max)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            lowest = keras.ops.cast(-1e4 if inputs.dtype == "float16" else -1e9, inputs.dtype)
            inputs = keras.ops.where(keras.ops.expand_dims(mask, -1), inputs, lowest)
        return keras.ops.max(inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="sentiment_tf")
class PackedBidirectional(keras.layers.Layer):
    """A bidirectional RNN over right-padded, masked sequences that runs both RNNs without a mask.

    The forward RNN reads each text and then its padding, which only changes outputs at padded
    steps. The backward RNN reads each text reversed in place (``tf.reverse_sequence`` over its own
    length), so it too starts at a real token. At every real step the outputs equal Keras'
    masked ``Bidirectional`` (same weights, same weight order); padded steps stay masked for the
    pooling that follows, and each step is faster than with the mask (bench/README.md).
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        if not getattr(layer, "return_sequences", False):
            raise ValueError("PackedBidirectional needs an RNN with return_sequences=True")
        self.forward_layer = layer
        config = {**layer.get_config(), "name": f"backward_{layer.name}"}
        self.backward_layer = layer.__class__.from_config(config)
        self.supports_masking = True

    def build(self, input_shape):
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)

    def call(self, inputs, mask=None, training=None):
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], tf.bool)
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        # tf.identity: a tensor without the Keras mask attached, so the RNNs run unmasked.
        forward = self.forward_layer(tf.identity(inputs), training=training)
        reversed_inputs = tf.reverse_sequence(inputs, lengths, seq_axis=1, batch_axis=0)
        backward = self.backward_layer(reversed_inputs, training=training)
        backward = tf.reverse_sequence(backward, lengths, seq_axis=1, batch_axis=0)
        return tf.concat([forward, backward], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], 2 * self.forward_layer.units)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.forward_layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


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
    rnn = cell(cfg.rnn_units, return_sequences=cfg.pooling == "max", name=cfg.rnn)
    if cfg.bidirectional and cfg.pooling == "max":
        rnn = PackedBidirectional(rnn, name=f"bi{cfg.rnn}")
    elif cfg.bidirectional:
        rnn = keras.layers.Bidirectional(rnn, name=f"bi{cfg.rnn}")
    x = rnn(x)
    if cfg.pooling == "max":
        x = MaskedGlobalMaxPooling1D(name="max_pool")(x)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    # float32 output even under mixed precision, so softmax and the loss stay numerically stable.
    probs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(ids, probs, name=f"{'bi' if cfg.bidirectional else ''}{cfg.rnn}_{cfg.pooling}_classifier")


SERVING_INPUT = "text"  # every signature takes raw strings: cleaning and jieba run in the graph
KERAS_FILE = "keras_model.keras"  # in assets.extra/: the trainable model, for fine-tuning
EMBED_SIGNATURE = "embed"  # text → the pooled features the head reads, and the probabilities (for `select`)
TOKENIZE_SIGNATURE = "tokenize"  # text → the tokens the model reads (to check the segmentation)
# text → probabilities and each text's token and unknown-token counts: what `serve` needs per batch, so
# its out-of-vocabulary metric needs no Python jieba.
COUNTED_SIGNATURE = "predict_with_counts"


def write_saved_model(model: keras.Model, preprocessor: Preprocessor, labels: list[str], path: str | Path,
                      temperature: float = 1.0) -> None:
    """Writes a SavedModel whose ``serving_default`` maps raw strings to predictions — cleaning, jieba
    and the vocabulary in the graph — with the calibration temperature applied (TF Serving returns
    calibrated probabilities too)."""
    label_names = tf.constant(labels, dtype=tf.string)
    text_spec = [tf.TensorSpec(shape=(None,), dtype=tf.string, name=SERVING_INPUT)]
    head = model.get_layer("probabilities")
    features = keras.Model(model.inputs, head.input)  # the pooled representation the head reads

    @tf.function(input_signature=text_spec, autograph=False)
    def forward(text: tf.Tensor) -> dict[str, tf.Tensor]:
        # Traced once and called by every signature: one copy of the model in the export, a third of the tracing.
        tokens = preprocessor.graph(text)
        ids = tokens_to_ids(tokens, preprocessor.lookup, preprocessor.max_tokens).to_tensor(default_value=0)
        pooled = features(ids, training=False)
        probs = tf.nn.softmax(tf.math.log(tf.maximum(head(pooled), 1e-12)) / temperature, axis=-1)
        unknown = tf.equal(tf.ragged.map_flat_values(preprocessor.lookup, tokens), 1)  # every token, not only kept
        return {"embedding": pooled, "probabilities": probs, "token_count": tokens.row_lengths(),
                "unknown_count": tf.reduce_sum(tf.cast(unknown, tf.int64), axis=1)}

    def serve(text: tf.Tensor) -> dict[str, tf.Tensor]:
        probs = forward(text)["probabilities"]
        label_id = tf.argmax(probs, axis=-1)
        return {"probabilities": probs, "label_id": label_id, "label": tf.gather(label_names, label_id)}

    def embed(text: tf.Tensor) -> dict[str, tf.Tensor]:
        out = forward(text)
        return {"embedding": out["embedding"], "probabilities": out["probabilities"]}

    def tokenize(text: tf.Tensor) -> dict[str, tf.Tensor]:
        tokens = preprocessor.graph_tokens(text)
        return {"tokens": tokens.to_tensor(default_value=""), "length": tokens.row_lengths()}

    def counted(text: tf.Tensor) -> dict[str, tf.Tensor]:
        out = forward(text)
        return {key: out[key] for key in ("probabilities", "token_count", "unknown_count")}

    archive = keras.export.ExportArchive()
    archive.track(model)
    lookup = preprocessor.lookup
    if not lookup.built:
        lookup(tf.constant([UNK_TOKEN]))  # ExportArchive only tracks built layers
    archive.track(lookup)  # its hash table must be saved with the graph
    archive.track(preprocessor.graph)  # jieba's dictionary and HMM, the stopwords
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=text_spec)
    archive.add_endpoint(name=EMBED_SIGNATURE, fn=embed, input_signature=text_spec)
    archive.add_endpoint(name=TOKENIZE_SIGNATURE, fn=tokenize, input_signature=text_spec)
    archive.add_endpoint(name=COUNTED_SIGNATURE, fn=counted, input_signature=text_spec)
    archive.write_out(str(path), verbose=False)


def predict_proba(model: keras.Model, preprocessor: Preprocessor, segmented: list[str],
                  batch_size: int = 256) -> np.ndarray:
    """Probabilities in input order (bucketing would reorder, so batches are padded per batch)."""
    ds = preprocessor.dataset(segmented, None, batch_size, bucketing=False)
    return model.predict(ds, verbose=0)


def card(metadata: dict[str, Any], config: dict[str, Any]) -> model_card.FamilyCard:
    """What the model card says of an LSTM export (its metadata and run config)."""
    model_cfg, tok_cfg, tok = config.get("ModelConfig", {}), config.get("TokenizerConfig", {}), metadata["tokenizer"]
    start = metadata.get("language_model")
    user_dict = f", user dictionary (sha256 {str(tok.get('user_dict_sha256'))[:12]}…)" if tok.get("user_dict_sha256") else ""
    where = ("runs in the graph, checked token for token against Python's jieba on the test texts at export"
             if metadata.get("input_format") == "raw" else "runs in Python, checked on load")
    return model_card.FamilyCard(
        architecture=(f"jieba {tok.get('mode', '?')} tokens → Embedding({model_cfg.get('embedding_dim')}) → "
                      f"{'bidirectional ' if model_cfg.get('bidirectional') else ''}{str(model_cfg.get('rnn', '')).upper()}"
                      f"({model_cfg.get('rnn_units')} units, {model_cfg.get('pooling')} pooling) → Dense softmax"),
        initialisation=(f"started from the LSTM language model `{start['path']}` (held-out perplexity "
                        f"{start.get('held_out_after', {}).get('perplexity', float('nan')):.1f})" if start
                        else "random initialisation"),
        tokenizer=(f"jieba {tok.get('jieba_version')} {tok.get('mode')} mode, HMM {'on' if tok.get('hmm') else 'off'}"
                   f"{user_dict}; {where}. Vocabulary {metadata.get('vocabulary_size')} ids (min frequency "
                   f"{tok_cfg.get('min_freq', '?')}); at most {metadata.get('max_tokens')} tokens per text"),
        length_limit=f"{metadata.get('max_tokens')} jieba tokens", empty_text="becomes a single [UNK] token",
        token_unit="jieba tokens", train_options=("unfreeze", "lr_decay"))


def export(model: keras.Model, preprocessor: Preprocessor, labels: list[str], base_dir: str | Path, config: dict,
           metrics: dict, check_texts: list[str], keep_failed: Path | None = None, language_model: dict | None = None,
           temperature: float = 1.0, profile: dict | None = None) -> Path:
    """Exports a new version under ``base_dir`` after checking the SavedModel agrees with ``model``.

    ``check_texts`` (the run's test texts) go through both: the graph's tokens must equal the Python
    tokenizer's on every one, and on sentences of the vocabulary's words (so every dictionary path the
    model knows is walked); probabilities must agree within 1e-5 on the first 256.
    """
    vocabulary = preprocessor.vocabulary
    sentences = ["".join(vocabulary[i:i + 30]) for i in range(0, len(vocabulary), 30)]
    check_texts = [*check_texts, *sentences, "", " ", UNK_TOKEN]
    tokens = [preprocessor.kept_tokens(s) for s in preprocessor.segment(check_texts, cleaned=False)]
    scored = [*check_texts[:256], *check_texts[-3:]]
    segmented = preprocessor.segment(scored, cleaned=False)
    expected = calibration.scale(predict_proba(model, preprocessor, segmented), temperature)
    verify = export_lib.signature_verifier(scored, expected, 1e-5, SERVING_INPUT,
                                           expected_tokens=(check_texts, tokens))

    files, preprocessing = preprocessor.export_files()
    files["config.json"] = json.dumps(config, ensure_ascii=False, indent=2, default=str).encode("utf-8")
    metadata = {
        "family": "lstm",
        "labels": list(labels),
        "label2id": {name: i for i, name in enumerate(labels)},
        "input_format": "raw",
        **preprocessing,
        "signature": {"name": "serving_default", "input": SERVING_INPUT, "input_dtype": "string",
                      "input_description": "raw text (cleaned and segmented with jieba in the graph)",
                      "outputs": {"probabilities": "float32 [n, labels]", "label_id": "int64 [n]",
                                  "label": "string [n]"},
                      "other_signatures": {EMBED_SIGNATURE: "text → embedding float32 [n, d], probabilities",
                                           TOKENIZE_SIGNATURE: "text → tokens string [n, t] (padded with ''), "
                                                               "length int64 [n]",
                                           COUNTED_SIGNATURE: "text → probabilities, token_count int64 [n], "
                                                              "unknown_count int64 [n]"}},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "metrics": metrics,
        "language_model": language_model,
        "temperature": temperature,
        "profile": profile,
    }
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        # The Keras model travels too, so `finetune` can continue training from an export.
        keras_path = Path(tmp) / KERAS_FILE
        model.save(keras_path)
        files[KERAS_FILE] = keras_path
        return export_lib.write_version(
            base_dir, lambda path: write_saved_model(model, preprocessor, labels, path, temperature),
            metadata, files, verify, keep_failed=keep_failed, about=card(metadata, config))


def distillation_loss(num_classes: int, temperature: float, alpha: float) -> Any:
    """Hinton et al.'s loss on ``SoftTargets.rows`` targets: ``alpha`` × T² × cross-entropy between the
    teacher's and the student's distributions at temperature T, plus (1 − ``alpha``) × the label's
    cross-entropy; a text without a label learns from the teacher alone."""
    k = num_classes

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        soft, onehot, labelled = y_true[:, :k], y_true[:, k:2 * k], y_true[:, 2 * k]
        log_p = tf.math.log(tf.maximum(tf.cast(y_pred, tf.float32), 1e-12))
        soft_term = -tf.reduce_sum(soft * tf.nn.log_softmax(log_p / temperature, axis=-1), axis=-1) * temperature ** 2
        hard_term = -tf.reduce_sum(onehot * log_p, axis=-1)
        return tf.where(labelled > 0, alpha * soft_term + (1 - alpha) * hard_term, soft_term)

    return loss


def target_accuracy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Accuracy against the label, or the teacher's choice for a text without one."""
    k = y_pred.shape[-1]
    target = tf.where(y_true[:, 2 * k:] > 0, y_true[:, k:2 * k], y_true[:, :k])
    return tf.cast(tf.equal(tf.argmax(target, -1), tf.argmax(y_pred, -1)), tf.float32)


target_accuracy.__name__ = "accuracy"  # the metric keeps its usual name in the logs and history


def fit(splits: "Splits", segmented: dict[str, list[str]], preprocessor: Preprocessor,
        model_cfg: ModelConfig, train_cfg: "TrainConfig", run_dir: Path, seed: int = 42,
        extra_callbacks: list | None = None, model: keras.Model | None = None,
        initialise: Any = None, soft: "SoftTargets | None" = None) -> tuple[keras.Model, dict[str, list[float]]]:
    """Builds (or continues, when ``model`` is given) and trains the classifier with ``model.fit`` on
    ``segmented`` texts; returns (model, history). Layers with ``trainable=False`` stay frozen. ``initialise(model)``
    sets a newly built model's starting weights (a pretrained language model's). With ``soft`` (a
    teacher's probabilities), it learns from them and the labels (:func:`distillation_loss`)."""
    keras.utils.set_random_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    num_classes = len(splits.labels.names)
    y_train, y_val = splits.train["y"].to_numpy(), splits.val["y"].to_numpy()
    if soft is not None:
        y_train, y_val = soft.rows(soft.train, y_train), soft.rows(soft.val, y_val)
    train_ids = preprocessor.ids(tf.constant(segmented["train"], dtype=tf.string))
    train_ds = training.shard_by_data(tf, batching.prefetched(batching.training_batches(
        train_ids, (tf.constant(y_train),), train_cfg.batch_size, seed,
        sort_by_length=train_cfg.bucketing, first_pass=training.epochs_done(run_dir))))
    steps = batching.steps_per_pass(len(segmented["train"]), train_cfg.batch_size)
    val_ds = training.shard_by_data(tf, preprocessor.dataset(segmented["val"], y_val, max(train_cfg.batch_size, 256),
                                                             train_cfg.bucketing))
    with training.distribution_strategy(tf).scope(), training.precision_policy(
            keras.mixed_precision, train_cfg.mixed_precision and bool(gpus)):
        if model is None:
            model = build_model(model_cfg, vocab_size=len(preprocessor.vocabulary) + 2, num_classes=num_classes)
            if initialise is not None and not training.epochs_done(run_dir):  # a resumed run restores its own
                initialise(model)
        elif tf.distribute.has_strategy():  # a loaded model's variables were made outside this strategy
            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
            model = copy
        optimizer = FusedAdam(train_cfg.learning_rate)
        training.log_batch(tf.distribute.get_strategy(), train_cfg.batch_size, train_cfg.learning_rate)
        if soft is None:
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        else:
            model.compile(optimizer=optimizer, loss=distillation_loss(num_classes, soft.temperature, soft.alpha),
                          metrics=[target_accuracy])
        schedule = layer_schedule(model, optimizer, train_cfg.unfreeze, train_cfg.lr_decay)
    class_weight = None
    if train_cfg.class_weight == "balanced" and soft is not None:
        raise UserError("--class-weight balanced cannot weigh a teacher's soft targets; leave it out when distilling")
    if train_cfg.class_weight == "balanced":
        class_weight = training.balanced_class_weight(splits.train["y"].to_numpy(), num_classes)
        log.info("class weights: %s", class_weight)
    callbacks = training.standard_callbacks(keras.callbacks, run_dir, train_cfg.patience,
                                            [*schedule, *(extra_callbacks or [])])
    model.fit(train_ds, validation_data=val_ds, epochs=training.epochs_to_run(run_dir, train_cfg.epochs),
              steps_per_epoch=steps,
              class_weight=class_weight,
              shuffle=False,  # training_batches shuffles (before sorting by length)
              callbacks=callbacks, verbose=2 if not sys.stdout.isatty() else "auto")
    training.log_weights_digest(model)
    return model, training.fitted_history(callbacks)


def layer_schedule(model: keras.Model, optimizer: FusedAdam, unfreeze: str, lr_decay: float) -> list:
    """ULMFiT's gradual unfreezing and discriminative learning rates (Howard & Ruder 2018) over three
    groups, output layer → recurrent layer → embedding: group k trains from epoch k + 1 ('gradual')
    at the learning rate divided by ``lr_decay`` ** k. Returns the callback that sets each epoch's
    rates (from the epoch number, so a resumed run gets the same ones)."""
    if unfreeze == "all" and lr_decay == 1:
        return []
    top, bottom = model.get_layer("probabilities"), model.get_layer("embedding")
    groups = [[top], [layer for layer in model.layers if layer not in (top, bottom)], [bottom]]
    scales = []
    for depth, layers in enumerate(groups):
        variables = [v for layer in layers for v in layer.trainable_variables]
        if not variables:  # frozen (finetune --freeze)
            continue
        scale = tf.Variable(1.0, trainable=False, name=f"lr_scale_{depth}")
        optimizer.scale_learning_rate(variables, scale)
        scales.append((scale, depth if unfreeze == "gradual" else 0, lr_decay ** -depth,
                       " + ".join(layer.name for layer in layers if layer.trainable_weights)))
    log.info("layer schedule: %s", "; ".join(f"{names} from epoch {start + 1} at ×{rate:.3g} the learning rate"
                                             for _, start, rate, names in scales))

    def set_rates(epoch: int, logs: dict | None = None) -> None:
        for scale, start, rate, _ in scales:
            scale.assign(rate if epoch >= start else 0.0)

    return [keras.callbacks.LambdaCallback(on_epoch_begin=set_rates)]


@dataclasses.dataclass
class TrainedLSTM:
    """The trained model with what it needs to predict and export (the interface ``train.py`` uses)."""

    model: keras.Model
    preprocessor: Preprocessor
    labels: list[str]
    history: dict[str, list[float]]
    language_model: dict | None = None  # what the classifier started from (recorded in the export)
    temperature: float = 1.0  # calibration, applied to every prediction and in the export's graph
    profile: dict | None = None  # the test split as this model saw it (sentiment_tf.evaluation.drift), for `monitor`

    def tokens(self, texts: list[str]) -> Tokens:
        """jieba tokens of cleaned texts, and how many are not in the vocabulary."""
        return self.preprocessor.tokens(self.preprocessor.segment(texts))

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities for cleaned texts, in input order."""
        raw = predict_proba(self.model, self.preprocessor, self.preprocessor.segment(texts))
        return calibration.scale(raw, self.temperature).astype(np.float32)

    def _target_logit(self) -> Any:
        """One graph for every text (lengths vary: traced for any shape), not layer by layer in eager
        mode; built once per model (a page explains one text at a time)."""
        if getattr(self, "_target_logit_fn", None) is not None:
            return self._target_logit_fn
        import inspect

        embedding, head = self.model.get_layer("embedding"), self.model.get_layer("probabilities")
        body = self.model.layers[self.model.layers.index(embedding) + 1: self.model.layers.index(head)]

        def logits(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:  # the network after the embedding, pre-softmax
            for layer in body:
                if "mask" in inspect.signature(layer.call).parameters and mask is not None:
                    x = layer(x, mask=mask, training=False)
                else:
                    x = layer(x, training=False)
                mask = mask if len(x.shape) == 3 else None
            return tf.matmul(x, head.kernel) + head.bias

        @tf.function(reduce_retracing=True)
        def target_logit(path: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
            return tf.gather(logits(path, tf.ones(tf.shape(path)[:2], tf.bool)), target, axis=1)

        self._target_logit_fn = target_logit
        return target_logit

    def explain(self, texts: list[str], steps: int = 50, targets: list[int] | None = None) -> list:
        """Integrated gradients per jieba token (see :mod:`sentiment_tf.evaluation.attributions`) for
        cleaned texts, of the predicted label or ``targets``."""
        embedding = self.model.get_layer("embedding")
        target_logit = self._target_logit()
        out = []
        probabilities = self.predict_proba(texts)
        for i, (text, segmented) in enumerate(zip(texts, self.preprocessor.segment(texts))):
            tokens = self.preprocessor.kept_tokens(segmented)
            embedded = embedding(self.preprocessor.lookup(tf.constant([tokens])))[0]
            target = int(probabilities[i].argmax()) if targets is None else int(targets[i])
            scores, delta = integrated_gradients(lambda path: target_logit(path, tf.constant(target)), embedded,
                                                 tf.zeros_like(embedded), steps)
            out.append(Explanation(text, tokens, scores.tolist(), self.labels[target], float(probabilities[i, target]),
                                   delta))
        return out

    def export(self, base_dir: str | Path, config: dict, metrics: dict, check_texts: list[str],
               keep_failed: Path | None = None) -> Path:
        return export(self.model, self.preprocessor, self.labels, base_dir, config, metrics, check_texts,
                      keep_failed, self.language_model, self.temperature, self.profile)


def fit_texts(splits: "Splits", tok_cfg: "TokenizerConfig", model_cfg: ModelConfig, train_cfg: "TrainConfig",
              run_dir: Path, lowercase: bool = True, seed: int = 42,
              extra_callbacks: list | None = None, soft: "SoftTargets | None" = None) -> TrainedLSTM:
    """Segments the splits with jieba (or characters), builds the vocabulary from the training split
    only, and trains with :func:`fit`. From a ``--pretrained`` language model: its vocabulary first
    (training-split words it lacks get new rows), its embedding and both RNN directions."""
    lm = lstm_lm.read_checkpoint(model_cfg.pretrained) if model_cfg.pretrained else None
    tokenizer = Tokenizer(mode=tok_cfg.tokenizer, hmm=tok_cfg.hmm, lowercase=lowercase,
                          user_dict=tok_cfg.user_dict, stopwords=tok_cfg.stopwords)
    segmented = {name: tokenizer.segment(frame["text"], cleaned=True)
                 for name, frame in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    vocabulary = build_vocabulary(segmented["train"], tok_cfg.min_freq, tok_cfg.max_vocab)
    initialise = origin = None
    if lm is not None:
        tokenizer.ensure_matches(TokenizerSettings(**lm.description["tokenizer"]))
        known = set(lm.vocabulary)
        new = [t for t in vocabulary if t not in known]
        log.info("from the language model %s: %d tokens, %d new from the training split", lm.path,
                 len(lm.vocabulary), len(new))
        vocabulary = lm.vocabulary + new

        def initialise(model: keras.Model) -> None:
            lstm_lm.initialise_classifier(model, lm.load(), len(lm.vocabulary) + 2)

        origin = {"path": str(lm.path), "corpus": lm.description.get("corpus"), "from": lm.description.get("from"),
                  "held_out_after": lm.description.get("held_out_after"), "vocab_size": len(lm.vocabulary) + 2}
    preprocessor = Preprocessor(tokenizer, vocabulary, tok_cfg.max_tokens)
    model, history = fit(splits, segmented, preprocessor, model_cfg, train_cfg, run_dir, seed=seed,
                         extra_callbacks=extra_callbacks, initialise=initialise, soft=soft)
    return TrainedLSTM(model, preprocessor, splits.labels.names, history, origin)


def load_trained(version_dir: Path, metadata: dict) -> TrainedLSTM:
    """The trainable model of an LSTM export, with its vocabulary and (verified) tokenizer."""
    keras_path = version_dir / META_DIR / KERAS_FILE
    if not keras_path.is_file():
        raise UserError(f"{version_dir} holds no {KERAS_FILE} (exported by an older sentiment_tf); retrain it "
                        "with `python -m sentiment_tf.train` to fine-tune it")
    try:
        model = keras.saving.load_model(keras_path)
    except Exception as err:  # noqa: BLE001 - a truncated zip or h5 inside it: the file is damaged
        raise UserError(f"{keras_path}: cannot load this export's Keras model, the file is damaged or incomplete "
                        f"({str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__}); "
                        "export the model again or use another version") from None
    return TrainedLSTM(model, Preprocessor.from_export(version_dir, metadata), list(metadata["labels"]), {},
                       language_model=metadata.get("language_model"),
                       temperature=float(metadata.get("temperature", 1.0)), profile=metadata.get("profile"))


def grow_vocabulary(model: keras.Model, model_cfg: ModelConfig, old_size: int, new_tokens: int) -> keras.Model:
    """The same classifier with ``new_tokens`` extra embedding rows; every trained weight is kept.

    New rows start at the mean of the trained rows (plus small noise): a neutral starting point
    that fine-tuning moves, rather than random vectors the RNN has never seen.
    """
    grown = build_model(model_cfg, vocab_size=old_size + new_tokens, num_classes=model.output_shape[-1])
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.name == "embedding":
            weights = [extend_rows(weights[0], new_tokens)]
        if weights:
            grown.get_layer(layer.name).set_weights(weights)
    return grown


# ---------------------------------------------------------------------------------------------
# The family interface (sentiment_tf.models.family)


def merged_user_dict(source_dict: str | None, domain_dict: str | None, run_dir: Path) -> str | None:
    """The source model's jieba user dictionary with the domain's appended (written to the run dir)."""
    if not domain_dict:
        return source_dict
    if not Path(domain_dict).is_file():
        raise UserError(f"--user-dict {domain_dict}: file not found")
    parts = [Path(p).read_text(encoding="utf-8").strip() for p in (source_dict, domain_dict) if p]
    path = run_dir / "user_dict.txt"
    atomic.write_text(path, "\n".join(parts) + "\n")
    return str(path)


class LSTMFamily:
    """jieba words → Embedding → (Bi)LSTM, trained from scratch; adapting grows the vocabulary."""

    name = "lstm"

    def prepare(self, data_cfg: Any, tok_cfg: Any, model_cfg: ModelConfig, lowercase_given: bool) -> tuple:
        """A ``--pretrained`` language model fixes the tokenizer, the cleaning's case and the encoder's shapes."""
        if not model_cfg.pretrained:
            return data_cfg, tok_cfg, model_cfg

        lm = lstm_lm.read_checkpoint(model_cfg.pretrained)
        settings, shape = lm.description["tokenizer"], lm.shape
        if lowercase_given and data_cfg.lowercase != settings["lowercase"]:
            raise UserError(f"--pretrained {model_cfg.pretrained} was pretrained with lowercase={settings['lowercase']}; "
                            f"drop --{'no-' if settings['lowercase'] else ''}lowercase")
        user_dict = lm.path / "user_dict.txt"
        tok_cfg = dataclasses.replace(tok_cfg, tokenizer=settings["mode"], hmm=settings["hmm"] if settings["mode"] == "word" else tok_cfg.hmm,
                                      user_dict=str(user_dict) if user_dict.is_file() else None)
        model_cfg = dataclasses.replace(model_cfg, embedding_dim=shape.embedding_dim, rnn_units=shape.rnn_units,
                                        rnn=shape.rnn)
        log.info("from the language model %s: %s tokens, embedding %d, %d %s units per direction", lm.path,
                 settings["mode"], shape.embedding_dim, shape.rnn_units, shape.rnn)
        return dataclasses.replace(data_cfg, lowercase=settings["lowercase"]), tok_cfg, model_cfg

    def fit(self, splits: "Splits", tok_cfg: "TokenizerConfig", model_cfg: ModelConfig, train_cfg: "TrainConfig",
            run_dir: Path, lowercase: bool, seed: int, soft: "SoftTargets | None" = None) -> TrainedLSTM:
        return fit_texts(splits, tok_cfg, model_cfg, train_cfg, run_dir, lowercase=lowercase, seed=seed, soft=soft)

    def load(self, version_dir: Path, metadata: dict) -> TrainedLSTM:
        return load_trained(version_dir, metadata)

    def adapt(self, trained: TrainedLSTM, splits: "Splits", adapt_cfg: "AdaptConfig", model_cfg: ModelConfig,
              train_cfg: "TrainConfig", run_dir: Path, seed: int, soft: "SoftTargets | None" = None) -> TrainedLSTM:
        """Segments the domain splits (with the domain's user dictionary, if any), adds domain words
        as new embedding rows (``--grow-vocab``), freezes what ``--freeze`` names, and trains on (on a
        teacher's ``soft`` targets too, when given)."""
        tokenizer = old = trained.preprocessor.tokenizer
        if adapt_cfg.user_dict:
            tokenizer = Tokenizer(mode=old.mode, hmm=old.hmm, lowercase=old.lowercase,
                                  user_dict=merged_user_dict(old.user_dict, adapt_cfg.user_dict, run_dir),
                                  stopwords=old.stopwords_path)
        segmented = {name: tokenizer.segment(frame["text"], cleaned=True) for name, frame in
                     (("train", splits.train), ("val", splits.val))}
        vocabulary, model = list(trained.preprocessor.vocabulary), trained.model
        if adapt_cfg.grow_vocab and adapt_cfg.freeze == "none":
            known = set(vocabulary)
            new = [t for t in build_vocabulary(segmented["train"], adapt_cfg.min_freq, 10**9) if t not in known]
            if new:
                log.info("vocabulary grows by %d domain words (e.g. %s)", len(new), " ".join(new[:8]))
                model = grow_vocabulary(model, model_cfg, len(vocabulary) + 2, len(new))
                vocabulary += new
        if adapt_cfg.freeze in ("embeddings", "encoder"):
            model.get_layer("embedding").trainable = False
        if adapt_cfg.freeze == "encoder":
            for layer in model.layers:
                if layer.name != "probabilities":
                    layer.trainable = False
        preprocessor = Preprocessor(tokenizer, vocabulary, trained.preprocessor.max_tokens)
        model, history = fit(splits, segmented, preprocessor, model_cfg, train_cfg, run_dir, seed=seed, model=model,
                             soft=soft)
        return TrainedLSTM(model, preprocessor, trained.labels, history)


FAMILY = LSTMFamily()
