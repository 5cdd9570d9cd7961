"""Masked-LM pretraining of a BERT on unlabelled text: a WordPiece vocabulary, whole sequences
masked on the fly, the loss on the masked positions only."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_tf.core.config import PretrainConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.models import batching, training
from sentiment_tf.models.bert.checkpoints import check_pretrained, load_weights

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ---------------------------------------------------------------------------------------------
# Vocabulary and sequences


def build_tokenizer(texts: list[str], cfg: PretrainConfig, out_dir: Path) -> Any:
    """A ``BertTokenizerFast`` over a WordPiece vocabulary trained on ``texts`` (or ``--vocab``).

    Like bert-base-chinese's: CJK characters are split one per token before WordPiece, so the
    vocabulary holds single characters plus pieces of Latin words and numbers.
    """
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = out_dir / "vocab.txt"
    if cfg.vocab:
        if not Path(cfg.vocab).is_file():
            raise UserError(f"--vocab {cfg.vocab}: file not found")
        words = Path(cfg.vocab).read_text(encoding="utf-8").splitlines()
        missing = [t for t in SPECIAL_TOKENS if t not in words]
        if missing:
            raise UserError(f"--vocab {cfg.vocab} lacks {', '.join(missing)}; it is not a BERT vocab.txt")
        if Path(cfg.vocab).resolve() != vocab_path.resolve():
            vocab_path.write_text("\n".join(words) + "\n", encoding="utf-8")
    else:
        wordpiece = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                           lowercase=cfg.lowercase)
        # limit_alphabet: keep every character seen min_frequency times (the default 1000 would drop
        # most CJK characters into [UNK]).
        wordpiece.train_from_iterator(texts, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                      limit_alphabet=cfg.vocab_size, special_tokens=SPECIAL_TOKENS)
        wordpiece.save_model(str(out_dir))
    return BertTokenizerFast(vocab_file=str(vocab_path), do_lower_case=cfg.lowercase, tokenize_chinese_chars=True,
                             strip_accents=False, model_max_length=cfg.max_length)


def to_sequences(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """Word-piece ids per text, cut into windows of ``max_length - 2``, each wrapped in [CLS] … [SEP].

    One text per sequence (rather than packing texts together) matches what fine-tuning sees.
    """
    body = max_length - 2
    sequences = []
    for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
        for start in range(0, max(len(ids), 1), body):
            piece = ids[start: start + body]
            if piece:
                sequences.append([tokenizer.cls_token_id, *piece, tokenizer.sep_token_id])
    return sequences


def mlm_dataset(sequences: list[list[int]], tokenizer: Any, cfg: PretrainConfig, shuffle: bool, seed: int) -> Any:
    """Batches of {input_ids, attention_mask, labels}, masked afresh every epoch (when ``shuffle``).

    Masking is Hugging Face's ``DataCollatorForLanguageModeling``; texts of similar length share a
    batch (sorted within shuffled pools of 50 batches) so padding stays small.
    """
    import tensorflow as tf
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability, return_tensors="np",
                                               pad_to_multiple_of=8, seed=seed)  # few distinct shapes
    rng = np.random.default_rng(seed)
    pool = cfg.batch_size * 50

    def collate(chunk: list[int]) -> dict[str, np.ndarray]:
        batch = collator([{"input_ids": sequences[i]} for i in chunk])
        return {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "labels")}

    def chunks() -> list[list[int]]:
        order = rng.permutation(len(sequences)) if shuffle else np.arange(len(sequences))
        out = []
        for start in range(0, len(order), pool):
            part = sorted(order[start: start + pool], key=lambda i: len(sequences[i]))
            out.extend(part[i: i + cfg.batch_size] for i in range(0, len(part), cfg.batch_size))
        if shuffle:
            rng.shuffle(out)
        return out

    # Held-out batches are masked once, so losses before and after training are comparable.
    fixed = None if shuffle else [collate(c) for c in chunks()]

    def batches() -> Iterator[dict[str, np.ndarray]]:
        yield from fixed if fixed is not None else (collate(c) for c in chunks())

    spec = tf.TensorSpec([None, None], tf.int64)
    ds = tf.data.Dataset.from_generator(batches, output_signature={"input_ids": spec, "attention_mask": spec,
                                                                   "labels": spec})
    return batching.prefetched(ds)


# ---------------------------------------------------------------------------------------------
# Model


def build_model(cfg: PretrainConfig, tokenizer: Any) -> Any:
    """A ``TFBertForMaskedLM``: the ``--from`` checkpoint's, or a new one of the configured size."""
    from transformers import BertConfig, TFBertForMaskedLM

    if cfg.from_checkpoint:
        config, _ = check_pretrained(cfg.from_checkpoint)
        # A fine-tuned checkpoint has no MLM head; it then starts fresh (the encoder must load).
        return load_weights(TFBertForMaskedLM, cfg.from_checkpoint, config, fresh_prefixes=("cls.",))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
                        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate_size,
                        max_position_embeddings=max(512, cfg.max_length), pad_token_id=tokenizer.pad_token_id)
    model = TFBertForMaskedLM(config)
    model(model.dummy_inputs, training=False)
    return model


def masked_positions_trainer(mlm_model: Any) -> Any:
    """Wraps a ``TFBertForMaskedLM`` so training scores only the masked positions.

    Hugging Face's TF model projects *every* position onto the vocabulary; with 15 % masking that is
    ~7× more output-layer work than needed, and on small models the output layer dominates. Gathering
    the masked positions first, as the original BERT does, gives the same loss for a fraction of the
    cost. The wrapped model is saved as usual; this wrapper only carries the train/test steps.
    """
    import tensorflow as tf
    import tf_keras

    class MaskedPositionsMLM(tf_keras.Model):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner
            self.loss_tracker = tf_keras.metrics.Mean(name="loss")

        @property
        def metrics(self) -> list:
            return [self.loss_tracker]

        def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
            labels = inputs["labels"]
            hidden = self.inner.bert(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     training=training)[0]
            positions = tf.where(labels != -100)
            picked = tf.gather_nd(hidden, positions)[tf.newaxis]  # [1, masked, hidden]
            logits = self.inner.mlm(sequence_output=picked, training=training)[0]  # [masked, vocab]
            losses = tf_keras.losses.sparse_categorical_crossentropy(tf.gather_nd(labels, positions),
                                                                     tf.cast(logits, tf.float32), from_logits=True)
            return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32))

        def train_step(self, data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            # Under tf.distribute the optimizer sums the replicas' gradients: each contributes its share.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            with tf.GradientTape() as tape:
                loss = self(data, training=True)
                share = loss / replicas
            variables = self.inner.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(share, variables), variables))
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

        def test_step(self, data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            self.loss_tracker.update_state(self(data, training=False))
            return {"loss": self.loss_tracker.result()}

    return MaskedPositionsMLM(mlm_model)


def checkpoint_tokenizer(cfg: PretrainConfig, texts: list[str], work_dir: Path) -> Any:
    if cfg.from_checkpoint:
        if cfg.vocab:
            raise UserError("--vocab cannot change the vocabulary of a --from checkpoint; drop one of them")
        _, tokenizer = check_pretrained(cfg.from_checkpoint)
        return tokenizer
    if cfg.resume and (work_dir / "vocab.txt").is_file():  # the vocabulary the interrupted run trained with
        cfg = dataclasses.replace(cfg, vocab=str(work_dir / "vocab.txt"))
    return build_tokenizer(texts, cfg, work_dir)


class BertPretrainer:
    loss_name = "masked-LM"

    def check(self, cfg: PretrainConfig) -> PretrainConfig:
        """Refuses what cannot run before anything is written; returns ``cfg`` with BERT's defaults filled."""
        if cfg.hidden_size % cfg.heads:
            raise UserError(f"--heads {cfg.heads} must divide --hidden-size {cfg.hidden_size}")
        if cfg.from_checkpoint:
            check_pretrained(cfg.from_checkpoint)
        return dataclasses.replace(cfg, learning_rate=cfg.learning_rate or 5e-4)  # recorded concretely

    def run(self, cfg: PretrainConfig, train_texts: list[str], held_out: list[str], run_dir: Path,
            out_dir: Path) -> dict:
        import tensorflow as tf
        import tf_keras
        from transformers import create_optimizer

        tf_keras.utils.set_random_seed(cfg.seed)
        # Vocabulary (built from the training texts only) and sequences.
        tokenizer = checkpoint_tokenizer(cfg, train_texts, run_dir / "vocab")
        train_seqs = to_sequences(tokenizer, train_texts, cfg.max_length)
        held_seqs = to_sequences(tokenizer, held_out, cfg.max_length)
        unk = sum(s.count(tokenizer.unk_token_id) for s in train_seqs) / max(1, sum(len(s) - 2 for s in train_seqs))
        log.info("vocabulary %d pieces; %d training sequences; [UNK] share %.3f%%", len(tokenizer), len(train_seqs),
                 100 * unk)
        train_ds = training.shard_by_data(tf, mlm_dataset(train_seqs, tokenizer, cfg, shuffle=True, seed=cfg.seed))
        held_ds = (training.shard_by_data(tf, mlm_dataset(held_seqs, tokenizer, cfg, shuffle=False, seed=cfg.seed + 1))
                   if held_seqs else None)

        # Model and optimiser; the loss is computed on the masked positions only.
        with training.distribution_strategy(tf).scope():
            model = build_model(cfg, tokenizer)
            trainer = masked_positions_trainer(model)
            steps = max(1, cfg.epochs * -(-len(train_seqs) // cfg.batch_size))
            optimizer, _ = create_optimizer(init_lr=cfg.learning_rate, num_train_steps=steps,
                                            num_warmup_steps=int(cfg.warmup_ratio * steps),
                                            weight_decay_rate=cfg.weight_decay)
            trainer.compile(optimizer=optimizer)
            training.log_batch(tf.distribute.get_strategy(), cfg.batch_size, cfg.learning_rate)
        params = model.count_params()
        log.info("model: %d layers, hidden %d, %.1fM parameters%s", model.config.num_hidden_layers,
                 model.config.hidden_size, params / 1e6, f", from {cfg.from_checkpoint}" if cfg.from_checkpoint else "")

        before = _evaluate(trainer, held_ds)
        callbacks = [tf_keras.callbacks.BackupAndRestore(backup_dir=str(training.backup_dir(tf_keras.callbacks, run_dir))),
                     tf_keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"))]
        history = None
        if cfg.epochs:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                history = trainer.fit(train_ds, epochs=cfg.epochs, callbacks=callbacks,
                                      verbose=2 if not sys.stdout.isatty() else "auto")
        after = _evaluate(trainer, held_ds)
        training.log_weights_digest(model)
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        return {"held_out_sequences": len(held_seqs), "train_sequences": len(train_seqs), "parameters": params,
                "vocab_size": len(tokenizer), "unk_share": unk, "history": training.history_dict(history),
                "held_out_before": before, "held_out_after": after}


def _evaluate(model: Any, ds: Any) -> dict[str, float] | None:
    if ds is None:
        return None
    result = model.evaluate(ds, verbose=0)
    loss = float(result[0] if isinstance(result, list) else result)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}




PRETRAINER = BertPretrainer()
