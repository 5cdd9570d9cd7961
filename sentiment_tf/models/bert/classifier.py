"""BERT fine-tuning (Hugging Face ``TFBertForSequenceClassification``, tf-keras) and its raw-text export.

Only this package (``models/bert/``) touches tf-keras; the Keras 3 LSTM lives in ``models/lstm/``.

The exported SavedModel takes **raw strings**: cleaning (``data.cleaning_graph``), the checkpoint's WordPiece
tokenization (``models.bert.preprocessor``: the ops ``tensorflow_text.BertTokenizer`` is built from, arranged to
give the Hugging Face tokenizer's ids; never FastBertTokenizer, whose ops stock TF Serving lacks),
truncation, ``[CLS]``/``[SEP]``, padding, the model and softmax all run in the graph. A second
signature, ``encoded``, takes ``input_ids``/``attention_mask`` for clients that tokenize themselves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from sentiment_tf.core.config import ModelConfig, TrainConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.data.splits import Splits
from sentiment_tf.evaluation import drift
from sentiment_tf.evaluation.attributions import Explanation, integrated_gradients
from sentiment_tf.export import model_card
from sentiment_tf.export import versions as export_lib
from sentiment_tf.export.versions import META_DIR
from sentiment_tf.models import batching, training
from sentiment_tf.models.bert.checkpoints import (
    HF_DIR,
    VOCAB_FILE,
    check_pretrained,
    cleaning_lowercase,
    load_pretrained,
)
from sentiment_tf.models.bert.preprocessor import Preprocessor

log = logging.getLogger(__name__)

SERVING_INPUT = "text"
DEFAULT_CHECKPOINT = "bert-base-chinese"  # --pretrained when not given
# Graph vs eager float32 noise on the export check's probabilities reaches 6e-4 on a bert-base-sized model
# (bench/README.md); a tokenizer mismatch is caught by the exact token-id check, so this only clears the noise.
PROBABILITY_ATOL = 5e-3  # the fine-tuned checkpoint (config, weights, tokenizer) inside assets.extra/


# ---------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class TrainedBert:
    model: Any  # TFBertForSequenceClassification
    preprocessor: Preprocessor
    labels: list[str]
    history: dict[str, list[float]]
    temperature: float = 1.0
    profile: dict | None = None  # the test split as this model saw it (sentiment_tf.evaluation.drift), for `monitor`

    def tokens(self, texts: list[str]) -> "drift.Tokens":
        """Word pieces of cleaned texts (whole, not truncated), and how many are [UNK]."""
        return self.preprocessor.tokens(texts)

    def save_pretrained(self, version_dir: Path, metadata: dict, out: Path, tf_weights: bool = False) -> Path:
        """This model as a Hugging Face ``save_pretrained`` directory (``models/bert/hub.py``)."""
        from sentiment_tf.models.bert import hub

        return hub.save_pretrained(self, version_dir, metadata, out, tf_weights)

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Probabilities for cleaned texts, in input order."""
        ds = self.preprocessor.dataset(texts, None, batch_size, bucketing=False)
        logits = self.model.predict(ds, verbose=0)["logits"]
        return tf.nn.softmax(tf.cast(logits, tf.float32) / self.temperature, axis=-1).numpy()

    def explain(self, texts: list[str], steps: int = 50, targets: list[int] | None = None) -> list:
        """Integrated gradients over the word-piece embeddings ([CLS]/[SEP] kept in the baseline), merged
        back into the text's characters and words (a word's pieces sum), for cleaned texts."""
        table, tokenizer = self.model.bert.embeddings.weight, self.preprocessor.tokenizer
        out = []
        probabilities = self.predict_proba(texts)
        for i, text in enumerate(texts):
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True,
                                 verbose=False)
            head, tail = self.preprocessor.kept_span(len(enc["input_ids"]))
            keep = list(range(head)) + list(range(len(enc["input_ids"]) - tail, len(enc["input_ids"])))
            enc = {"input_ids": [tokenizer.cls_token_id, *(enc["input_ids"][k] for k in keep), tokenizer.sep_token_id],
                   "offset_mapping": [(0, 0), *(enc["offset_mapping"][k] for k in keep), (0, 0)]}
            ids = tf.constant(enc["input_ids"], tf.int32)
            embedded = tf.gather(table, ids)
            special = tf.constant([[s == e] for s, e in enc["offset_mapping"]])  # [CLS], [SEP]: no span
            target = int(probabilities[i].argmax()) if targets is None else int(targets[i])
            mask = tf.ones([steps + 2, len(enc["input_ids"])], tf.int32)

            def logit(path: tf.Tensor) -> tf.Tensor:
                # a dict as the first argument: tf-keras' Layer.__call__ needs one
                return self.model({"inputs_embeds": path, "attention_mask": mask}, training=False).logits[:, target]

            scores, delta = integrated_gradients(logit, embedded, tf.where(special, embedded, 0.0), steps)
            tokens, merged = [], []
            for (start, end), score, piece in zip(enc["offset_mapping"], scores,
                                                  tokenizer.convert_ids_to_tokens(enc["input_ids"])):
                if start == end:
                    continue
                if piece.startswith("##") and tokens:  # a word's continuation: one token for the reader
                    tokens[-1] += text[start:end]
                    merged[-1] += float(score)
                else:
                    tokens.append(text[start:end])
                    merged.append(float(score))
            out.append(Explanation(text, tokens, merged, self.labels[target], float(probabilities[i, target]), delta))
        return out

    def export(self, base_dir: str | Path, config: dict, metrics: dict, check_texts: list[str],
               keep_failed: Path | None = None) -> Path:
        return export(self, base_dir, config, metrics, check_texts, keep_failed)


def fit(splits: "Splits", model_cfg: "ModelConfig", train_cfg: "TrainConfig", run_dir: Path, lowercase: bool,
        seed: int = 42, extra_callbacks: list | None = None, initial: tuple[Any, Any] | None = None,
        freeze: Any = None) -> TrainedBert:
    """Fine-tunes ``model_cfg.pretrained`` (or the ``initial`` (model, tokenizer)) on the training split
    with ``model.fit``. ``freeze(model)``, if given, marks layers untrainable before compiling."""
    import tf_keras
    from transformers import create_optimizer

    # Dropout draws from tf.random.Generator variables, which the resume backup saves with the weights:
    # a resumed run then sees the uninterrupted run's masks (tf-keras' default per-op seeds restart).
    tf_keras.backend.experimental.enable_tf_random_generator()
    tf_keras.utils.set_random_seed(seed)
    labels = splits.labels.names
    gpus = tf.config.list_physical_devices("GPU")
    with training.distribution_strategy(tf).scope(), training.precision_policy(
            tf_keras.mixed_precision, train_cfg.mixed_precision and bool(gpus)):
        model, tokenizer = initial if initial is not None else load_pretrained(model_cfg.pretrained, labels)
        if initial is not None and tf.distribute.has_strategy():  # its variables were made outside this strategy
            copy = type(model)(model.config)
            copy.build()
            copy.set_weights(model.get_weights())
            model = copy
        if freeze is not None:
            freeze(model)
        texts = splits.train["text"].tolist()
        preprocessor = Preprocessor(tokenizer, model_cfg.max_length, model_cfg.truncation, lowercase)
        ids = preprocessor.encode(texts)
        # Bucket-top widths: few distinct shapes, so XLA compiles a handful of programs on a GPU.
        train_ds = batching.training_batches(
            ids, (tf.constant(splits.train["y"].to_numpy(), tf.int64),), train_cfg.batch_size, seed,
            sort_by_length=train_cfg.bucketing, pad_value=tokenizer.pad_token_id,
            bucketed_shapes=True, first_pass=training.epochs_done(run_dir))
        train_ds = training.shard_by_data(tf, batching.prefetched(
            train_ds.map(lambda ids, y: preprocessor.features(ids, y))))
        val_ds = training.shard_by_data(tf, preprocessor.dataset(
            splits.val["text"].tolist(), splits.val["y"].to_numpy(), train_cfg.batch_size, train_cfg.bucketing))
        steps_per_epoch = batching.steps_per_pass(len(texts), train_cfg.batch_size)
        training.log_batch(tf.distribute.get_strategy(), train_cfg.batch_size, train_cfg.learning_rate)
        steps = train_cfg.epochs * steps_per_epoch
        optimizer, _ = create_optimizer(init_lr=train_cfg.learning_rate, num_train_steps=steps,
                                        num_warmup_steps=int(train_cfg.warmup_ratio * steps),
                                        weight_decay_rate=train_cfg.weight_decay)
        model.compile(optimizer=optimizer,
                      loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[tf_keras.metrics.SparseCategoricalAccuracy("accuracy")],
                      jit_compile=bool(gpus) and train_cfg.xla)
    class_weight = None
    if train_cfg.class_weight == "balanced":
        class_weight = training.balanced_class_weight(splits.train["y"].to_numpy(), len(labels))
    callbacks = training.standard_callbacks(tf_keras.callbacks, run_dir, train_cfg.patience, extra_callbacks,
                                            weights_only=True)
    model.fit(train_ds, validation_data=val_ds, epochs=training.epochs_to_run(run_dir, train_cfg.epochs),
              steps_per_epoch=steps_per_epoch,
              class_weight=class_weight, callbacks=callbacks, verbose=2 if not sys.stdout.isatty() else "auto")
    training.log_weights_digest(model)
    return TrainedBert(model, preprocessor, labels, training.fitted_history(callbacks))


# ---------------------------------------------------------------------------------------------
# Export


def weights_by_name(model: Any) -> dict[str, tf.Variable]:
    """``{name without the model's own prefix: variable}``: stable across instances of one config."""
    return {w.name.split("/", 1)[1]: w for w in model.weights}


class BertServing(tf.Module):
    """Raw strings → cleaning → the checkpoint's WordPiece → [CLS] ids [SEP] → padding → model → softmax."""

    def __init__(self, model: Any, vocab_path: str, labels: list[str], preprocessor: Preprocessor,
                 temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature
        # The network's variables by name, not the Keras model: serving needs only the variables, and
        # tracking the compiled model would export its optimizer's slots (2× the weights) and tf-keras'
        # traced copy of every layer. The lambda keeps the model callable without tracking it.
        self.model_weights = weights_by_name(model)
        # TFBertForSequenceClassification is bert → dropout (off) → classifier, on the pooler output
        # ([CLS] → dense → tanh); calling the two parts exposes the features `embed` returns.
        self._pooled = lambda ids, mask: model.bert(input_ids=ids, attention_mask=mask, training=False).pooler_output
        self._head = lambda pooled: model.classifier(pooled)
        self.vocab = tf.saved_model.Asset(vocab_path)
        self.token_ids = preprocessor.graph(self.vocab)  # raw strings → ids with [CLS]/[SEP]
        self.label_names = tf.constant(labels)
        self.pad_id = preprocessor.special_ids["pad"]

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None], tf.int64)])
    def features(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> dict[str, tf.Tensor]:
        """The pooled output and the logits: the one traced copy of the network every signature calls."""
        pooled = self._pooled(tf.cast(input_ids, tf.int32), tf.cast(attention_mask, tf.int32))
        return {"pooled": tf.cast(pooled, tf.float32), "logits": tf.cast(self._head(pooled), tf.float32)}

    def _predict(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> dict[str, tf.Tensor]:
        probs = tf.nn.softmax(self.features(input_ids, attention_mask)["logits"] / self.temperature, axis=-1)
        label_id = tf.argmax(probs, axis=-1)
        return {"probabilities": probs, "label_id": label_id, "label": tf.gather(self.label_names, label_id)}

    def _encode_text(self, text: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        tokens = self.tokenize(text)
        input_ids = tokens["input_ids"]
        return input_ids, tf.sequence_mask(tokens["length"], maxlen=tf.shape(input_ids)[1], dtype=tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        # Calls into the other functions, so the SavedModel holds one copy of each graph.
        return self.encoded(*self._encode_text(text))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="input_ids"),
                                  tf.TensorSpec([None, None], tf.int64, name="attention_mask")])
    def encoded(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(input_ids, attention_mask)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
    def embed(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self.features(*self._encode_text(text))
        return {"embedding": out["pooled"], "probabilities": tf.nn.softmax(out["logits"] / self.temperature, axis=-1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
    def tokenize(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = self.token_ids(text)
        return {"input_ids": ids.to_tensor(default_value=self.pad_id), "length": ids.row_lengths()}


def write_saved_model(trained: TrainedBert, path: Path, vocab_path: str) -> None:
    module = BertServing(trained.model, vocab_path, trained.labels, trained.preprocessor, trained.temperature)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve,
                                                       "encoded": module.encoded,
                                                       "tokenize": module.tokenize,
                                                       "embed": module.embed})


def card(metadata: dict[str, Any]) -> model_card.FamilyCard:
    """What the model card says of a BERT export (its metadata)."""
    return model_card.FamilyCard(
        architecture=f"BERT for sequence classification, fine-tuned from `{metadata.get('pretrained')}`",
        initialisation=f"`{metadata.get('pretrained')}`",
        tokenizer=(f"the checkpoint's WordPiece, in the graph (TensorFlow Text `BertTokenizer`; lower case "
                   f"{metadata.get('wordpiece', {}).get('lower_case')}); at most {metadata.get('max_length')} word "
                   "pieces including [CLS]/[SEP]"),
        length_limit=f"{metadata.get('max_length')} word pieces", empty_text="becomes [CLS] [SEP] alone",
        token_unit="word pieces", train_options=("weight_decay", "warmup_ratio"))


def export(trained: TrainedBert, base_dir: str | Path, config: dict, metrics: dict, check_texts: list[str],
           keep_failed: Path | None = None) -> Path:
    """A new version under ``base_dir``; on ``check_texts`` its token ids must equal :func:`encode`'s and its
    probabilities the trained model's within ``PROBABILITY_ATOL``."""
    import tempfile


    check_texts = list(check_texts[:64]) + ["", "ＡＢＣ 好评！😀 http://x.cn", "Ünïcödé ÇAFÉ [SEP] Σ ^_^ " + "😀" * 30]
    # The graph takes raw text and cleans it; the Python model takes cleaned text.
    cleaned = [clean_text(t, trained.preprocessor.lowercase) for t in check_texts]
    expected = trained.predict_proba(cleaned)
    expected_ids = trained.preprocessor.encode(cleaned).to_list()
    verify = export_lib.signature_verifier(check_texts, expected, PROBABILITY_ATOL, SERVING_INPUT, expected_ids)

    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / HF_DIR
        # Config (with id2label) and tokenizer only: the weights are the SavedModel's variables, once.
        trained.model.config.save_pretrained(str(hf_dir))
        trained.preprocessor.tokenizer.save_pretrained(str(hf_dir))
        vocab_path = str(hf_dir / VOCAB_FILE)
        files: dict[str, str | Path | bytes] = {
            VOCAB_FILE: vocab_path,
            "config.json": json.dumps(config, ensure_ascii=False, indent=2, default=str).encode("utf-8"),
        }
        files.update({f"{HF_DIR}/{p.name}": p for p in hf_dir.iterdir()})
        metadata = {
            "family": "bert",
            "labels": list(trained.labels),
            "label2id": {name: i for i, name in enumerate(trained.labels)},
            "input_format": "raw",
            **trained.preprocessor.export_metadata(),
            "pretrained": config.get("ModelConfig", {}).get("pretrained"),
            "signature": {"name": "serving_default", "input": SERVING_INPUT, "input_dtype": "string",
                          "input_description": "raw text (cleaned and tokenized in the graph)",
                          "outputs": {"probabilities": "float32 [n, labels]", "label_id": "int64 [n]",
                                      "label": "string [n]"},
                          "other_signatures": {"encoded": "input_ids, attention_mask: int64 [n, len]",
                                               "tokenize": "text → input_ids, length",
                                               "embed": "text → embedding float32 [n, hidden] (pooler output), "
                                                        "probabilities"}},
            "versions": _versions(),
            "metrics": metrics,
            "temperature": trained.temperature,
            "profile": trained.profile,
        }
        return export_lib.write_version(base_dir, lambda path: write_saved_model(trained, path, vocab_path),
                                        metadata, files, verify, keep_failed=keep_failed, about=card(metadata))


def _versions() -> dict[str, str]:
    import tensorflow_text
    import transformers

    return {"tensorflow": tf.__version__, "tensorflow_text": tensorflow_text.__version__,
            "transformers": transformers.__version__}


def load_trained(version_dir: Path, metadata: dict) -> TrainedBert:
    """The fine-tuned model inside a BERT export, ready to train further.

    The network is rebuilt from ``assets.extra/hf_model/config.json`` and its weights are restored from
    the SavedModel's variables; older exports that carry ``hf_model/tf_model.h5`` load from that.
    """
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        TFBertForSequenceClassification,
    )

    hf_dir = version_dir / META_DIR / HF_DIR
    if not (hf_dir / "config.json").is_file():
        raise UserError(f"{version_dir} holds no {META_DIR}/{HF_DIR}/config.json; retrain it with "
                        "`python -m sentiment_tf.train --model bert` to fine-tune it")
    tokenizer = BertTokenizerFast.from_pretrained(str(hf_dir))
    if (hf_dir / "tf_model.h5").is_file():
        model = TFBertForSequenceClassification.from_pretrained(str(hf_dir))
    else:
        model = TFBertForSequenceClassification(BertConfig.from_pretrained(str(hf_dir)))
        model(model.dummy_inputs, training=False)
        restore_from_saved_model(model, version_dir)
    return TrainedBert(model, Preprocessor.from_export(tokenizer, metadata), list(metadata["labels"]), {},
                       temperature=float(metadata.get("temperature", 1.0)), profile=metadata.get("profile"))


def restore_from_saved_model(model: Any, version_dir: Path) -> None:
    """Assigns the export's ``BertServing.model_weights`` to ``model``, every one of them."""
    prefix = str(version_dir / "variables" / "variables")
    try:
        status = tf.train.Checkpoint(model_weights=weights_by_name(model)).read(prefix)
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError) as err:  # IndexError: truncated shard
        raise UserError(f"{version_dir}/variables: cannot restore the BERT weights from it "
                        f"({str(err).splitlines()[0][:200]})") from None


# ---------------------------------------------------------------------------------------------
# The family interface (sentiment_tf.models.family)


class BertFamily:
    """A Hugging Face BERT checkpoint fine-tuned with tf-keras; its word pieces tokenized in the graph."""

    name = "bert"

    def prepare(self, data_cfg: Any, tok_cfg: Any, model_cfg: "ModelConfig", lowercase_given: bool) -> tuple:
        """Checks the checkpoint (before any data is read); cleaning keeps case for a cased one unless
        --lowercase/--no-lowercase chose."""
        if not model_cfg.pretrained:  # recorded concretely with every run
            model_cfg = dataclasses.replace(model_cfg, pretrained=DEFAULT_CHECKPOINT)
        config, tokenizer = check_pretrained(model_cfg.pretrained)
        positions = getattr(config, "max_position_embeddings", None)
        if positions and model_cfg.max_length > positions:
            raise UserError(f"--max-length {model_cfg.max_length}: {model_cfg.pretrained} has {positions} positions "
                            f"(max_position_embeddings); use at most {positions}")
        lowercase = cleaning_lowercase(tokenizer, data_cfg.lowercase if lowercase_given else None)
        return dataclasses.replace(data_cfg, lowercase=lowercase), tok_cfg, model_cfg

    def fit(self, splits: "Splits", tok_cfg: Any, model_cfg: "ModelConfig", train_cfg: "TrainConfig",
            run_dir: Path, lowercase: bool, seed: int, soft: Any = None) -> TrainedBert:
        return fit(splits, model_cfg, train_cfg, run_dir, lowercase=lowercase, seed=seed)

    def load(self, version_dir: Path, metadata: dict) -> TrainedBert:
        return load_trained(version_dir, metadata)

    def adapt(self, trained: TrainedBert, splits: "Splits", adapt_cfg: Any, model_cfg: "ModelConfig",
              train_cfg: "TrainConfig", run_dir: Path, seed: int) -> TrainedBert:
        """Trains on from the source weights, with the embeddings, the first ``--freeze-layers`` encoder
        layers or the whole encoder (``--freeze``) kept at their source values."""

        def freeze(model: Any) -> None:
            if adapt_cfg.freeze == "encoder":
                model.bert.trainable = False
            elif adapt_cfg.freeze == "embeddings" or adapt_cfg.freeze_layers:
                model.bert.embeddings.trainable = False
            layers = model.bert.encoder.layer
            if adapt_cfg.freeze_layers > len(layers):
                raise UserError(f"--freeze-layers {adapt_cfg.freeze_layers}: the model has only {len(layers)} layers")
            for layer in layers[: adapt_cfg.freeze_layers]:
                layer.trainable = False

        pre = trained.preprocessor
        model_cfg = dataclasses.replace(model_cfg, model="bert", max_length=pre.max_length, truncation=pre.truncation)
        return fit(splits, model_cfg, train_cfg, run_dir, lowercase=pre.lowercase, seed=seed,
                   initial=(trained.model, pre.tokenizer), freeze=freeze)


FAMILY = BertFamily()
