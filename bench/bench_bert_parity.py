"""BERT fine-tuning parity: `sentiment_tf.train --model bert` against a plain Hugging Face PyTorch loop
(bench/hf_pytorch_finetune.py) — the same checkpoint and initial weights, data, recipe and selection.

    python bench/bench_bert_parity.py                                  # ChnSentiCorp from ../shared/datasets
    python bench/bench_bert_parity.py --torch-python /tmp/ptvenv/bin/python   # torch in another venv

* data: ChnSentiCorp's standard split, loaded by `sentiment_tf.data` (cleaned, de-duplicated, train
  texts that occur in dev/test removed); both sides train, select and score on exactly these texts;
* checkpoint: a small BERT with a WordPiece vocabulary built from the training texts
  (`pretrain --epochs 0`) and one seeded classification head, saved once: both start from the
  same weights (a real checkpoint cannot be downloaded here, and bert-base does not fine-tune on
  2 CPU cores in a benchmark's time);
* recipe: AdamW, weight decay 0.01 except biases and LayerNorm, linear warmup over 10 % of the steps
  then linear decay, batch 32, the same epochs and max length; the epoch with the lowest dev loss is
  scored on test (ours: early stopping's restored best epoch);
* step time: median training step after the first 10 (ours: Keras' batches, length-sorted as
  `train` does by default, and once more with `--no-bucketing`, padded as the reference pads;
  theirs: shuffled batches padded to their longest text).

Targets: test accuracy within one standard error of the reference's; TF step time ≤ 1.0× PyTorch's.
The PyTorch row is skipped when no interpreter with torch is found.
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

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "chnsenticorp"


def has_torch(python: str) -> bool:
    return subprocess.run([python, "-c", "import torch, transformers"], capture_output=True).returncode == 0


def step_timer(callbacks_module):
    class StepTimer(callbacks_module.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


def make_checkpoint(splits, work: Path, args) -> Path:
    """A random-init small BERT (vocabulary from the training texts) with one seeded 2-label head."""
    corpus = work / "train_texts.txt"
    corpus.write_text("\n".join(splits.train["text"]) + "\n", encoding="utf-8")
    base = work / "random_init"
    proc = subprocess.run([sys.executable, "-m", "sentiment_tf.pretrain", "--corpus", str(corpus), "--output", str(base),
                           "--epochs", "0", "--run-dir", str(work / "run_pretrain"), "--hidden-size", str(args.hidden_size),
                           "--layers", str(args.layers), "--heads", str(args.heads), "--intermediate-size",
                           str(args.intermediate_size), "--max-length", str(args.max_length), "--vocab-size",
                           str(args.vocab_size)], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"pretrain failed:\n{proc.stderr[-2000:]}")
    import tf_keras
    from safetensors.numpy import save_file
    from transformers import BertTokenizerFast, TFBertForSequenceClassification
    from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

    tf_keras.utils.set_random_seed(0)
    model = TFBertForSequenceClassification.from_pretrained(str(base), num_labels=2)
    init = work / "init"
    model.save_pretrained(str(init))  # tf_model.h5: what ours loads
    # The same values in PyTorch's layout (model.safetensors), what BertForSequenceClassification loads.
    state = {}
    for w in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape)
        state[name] = np.ascontiguousarray(w.numpy().T if transpose.name == "SIMPLE" else w.numpy())
    save_file(state, str(init / "model.safetensors"), metadata={"format": "pt"})
    BertTokenizerFast.from_pretrained(str(base)).save_pretrained(str(init))
    return init


def run_ours(files: dict[str, Path], init: Path, work: Path, args, extra: tuple[str, ...] = (), name: str = "ours") -> dict:
    import tf_keras

    from sentiment_tf import train
    from sentiment_tf.models import training

    timer = step_timer(tf_keras.callbacks)
    original = training.standard_callbacks
    training.standard_callbacks = lambda *a, **k: original(*a, **k) + [timer]
    try:
        t0 = time.perf_counter()
        train.main(["--model", "bert", "--pretrained", str(init), "--data", str(files["train"]), "--val-data",
                    str(files["dev"]), "--test-data", str(files["test"]), "--text-col", "text_a", "--label-col", "label",
                    "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--learning-rate",
                    str(args.learning_rate), "--max-length", str(args.max_length), "--patience", str(args.epochs),
                    "--truncation", "head",  # what the reference's tokenizer(truncation=True) keeps
                    "--output", str(work / f"{name}_export"), "--run-dir", str(work / f"{name}_run"), *extra])
        seconds = time.perf_counter() - t0
    finally:
        training.standard_callbacks = original
    report = json.loads((work / f"{name}_run" / "report.json").read_text(encoding="utf-8"))
    val_loss = report["history"]["val_loss"]
    return {"test_accuracy": report["accuracy"], "dev_loss": val_loss, "best_epoch": 1 + int(np.argmin(val_loss)),
            "step_seconds": float(np.median(timer.times[10:] or timer.times)), "steps": len(timer.times),
            "seconds": seconds}


def run_reference(splits, init: Path, work: Path, args, python: str) -> dict:
    payload = {name: {"text": frame["text"].tolist(), "y": frame["y"].astype(int).tolist()}
               for name, frame in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    path = work / "splits.json"
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    t0 = time.perf_counter()
    proc = subprocess.run([python, str(REPO / "bench" / "hf_pytorch_finetune.py"), "--checkpoint", str(init),
                           "--splits", str(path), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                           "--learning-rate", str(args.learning_rate), "--max-length", str(args.max_length)],
                          capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    if proc.returncode:
        sys.exit(f"the PyTorch reference failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA), help="Directory with train/dev/test.tsv.")
    parser.add_argument("--torch-python", default=sys.executable, help="A Python with torch and transformers.")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--intermediate-size", type=int, default=512)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--work-dir", help="Keep checkpoints and runs here (default: a temporary directory).")
    args = parser.parse_args()
    data = Path(args.chnsenticorp)
    files = {name: data / f"{name}.tsv" for name in ("train", "dev", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        sys.exit(f"ChnSentiCorp not found ({', '.join(missing)}); pass --chnsenticorp DIR")

    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.core.errors import setup_logging
    from sentiment_tf.data.splits import load_splits

    setup_logging()
    # Exactly what `train` will see: the same loader, cleaning, de-duplication and leak removal.
    splits = load_splits(DataConfig(data=str(files["train"]), val_data=str(files["dev"]),
                                    test_data=str(files["test"]), text_col="text_a", label_col="label"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        init = make_checkpoint(splits, work, args)
        ours = run_ours(files, init, work, args)
        # Padded like the reference's batches (each to its longest text), to separate padding from compute.
        unsorted = run_ours(files, init, work, args, ("--no-bucketing",), "ours_unsorted")
        reference = run_reference(splits, init, work, args, args.torch_python) if has_torch(args.torch_python) else None
    n = len(splits.test)
    import tensorflow as tf

    print(f"\nBERT fine-tuning parity — ChnSentiCorp (cleaned, de-duplicated, leak-free): {len(splits.train)} train / "
          f"{len(splits.val)} dev / {n} test; {args.layers} layers, hidden {args.hidden_size}, max length "
          f"{args.max_length}; {args.epochs} epochs, batch {args.batch_size}, lr {args.learning_rate}; "
          f"{os.cpu_count()} CPU cores")
    print(f"{'':<46}{'test acc':>10}{'best epoch':>12}{'ms/step':>10}{'fit time':>10}")
    rows = [(f"sentiment_tf (TF {tf.__version__})", ours), ("sentiment_tf --no-bucketing", unsorted)]
    if reference:
        rows.append((f"Hugging Face PyTorch loop (torch {reference['torch']})", reference))
    for name, r in rows:
        print(f"{name:<46}{r['test_accuracy']:>10.4f}{r['best_epoch']:>12}{1000 * r['step_seconds']:>10.1f}"
              f"{r['seconds']:>9.0f}s")
    if reference is None:
        print("\nPyTorch reference skipped: no torch in --torch-python (pip install torch, or point it at a venv)")
        return
    p = reference["test_accuracy"]
    se = float(np.sqrt(p * (1 - p) / n))
    gap = ours["test_accuracy"] - p
    ratio = ours["step_seconds"] / reference["step_seconds"]
    print(f"\naccuracy: {100 * gap:+.2f} pt against the reference (one standard error: {100 * se:.2f} pt) "
          f"{'PASS' if abs(gap) <= se else 'FAIL'}")
    print(f"step time: {ratio:.2f}× the reference's (target ≤ 1.00×) {'PASS' if ratio <= 1.0 else 'FAIL'}; "
          f"with --no-bucketing (the reference's padding) {unsorted['step_seconds'] / reference['step_seconds']:.2f}×")


if __name__ == "__main__":
    main()
