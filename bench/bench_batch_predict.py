"""Bulk scoring throughput: `batch_predict` on Beam's DirectRunner (2 worker processes) vs
`predict --input` in one process vs jieba alone, with peak memory, at two input sizes.

    python bench/bench_batch_predict.py                 # 200k texts (online_shopping_10_cats reviews, repeated)
    python bench/bench_batch_predict.py --texts 50000 --model saved_models/lstm

The model is `--model` (default: a fresh `train` on the bundled corpus, defaults). Every command
runs in its own process; peak RSS is the largest resident set of that process tree (sampled every
0.2 s, so short peaks may be missed). Target (issue 21): batch_predict ≥ 1.5× predict's texts/s on
2 cores, and memory flat in the input size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "online_shopping_10_cats" / "online_shopping_10_cats.csv"


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (from /proc)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def cpu_of_children() -> float:
    """CPU seconds (user + system) of every finished child process and the descendants they waited for."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], log: Path) -> tuple[float, int, float]:
    """Wall seconds, peak RSS of the process tree, and CPU seconds of the whole tree."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    cpu0, t0, peak = cpu_of_children(), time.perf_counter(), 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.2)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed; see {log}")
    return time.perf_counter() - t0, peak, cpu_of_children() - cpu0


JIEBA_ONLY = """
import sys, pandas as pd
from sentiment_tf.models.lstm.preprocessor import Tokenizer
tok = Tokenizer()
for chunk in pd.read_csv(sys.argv[1], dtype=str, chunksize=20000):
    tok.segment(chunk["text"].fillna("").tolist())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="online_shopping_10_cats CSV (texts to repeat).")
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--model", help="An export to score with (default: train one on the bundled corpus).")
    parser.add_argument("--work-dir")
    args = parser.parse_args()
    import pandas as pd

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_batch_"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        model = str(work / "model")
        if not (work / "model").is_dir():
            run([sys.executable, "-m", "sentiment_tf.train", "--output", model, "--run-dir", str(work / "run")],
                work / "train.log")
    reviews = pd.read_csv(args.data, encoding="utf-8-sig")["review"].dropna().astype(str).tolist()
    sizes = [args.texts // 4, args.texts]
    rows = []
    for n in sizes:
        path = work / f"texts_{n}.csv"
        pd.DataFrame({"id": range(n), "text": [reviews[i % len(reviews)] for i in range(n)]}).to_csv(path, index=False)
        jieba_s, jieba_rss, _ = run([sys.executable, "-c", JIEBA_ONLY, str(path)], work / f"jieba_{n}.log")
        pred_s, pred_rss, pred_cpu = run([sys.executable, "-m", "sentiment_tf.predict", "--model", model, "--input", str(path),
                                "--output", str(work / f"pred_{n}.csv")], work / f"predict_{n}.log")
        beam_s, beam_rss, beam_cpu = run([sys.executable, "-m", "sentiment_tf.batch_predict", "--model", model, "--input",
                                str(path), "--output", str(work / f"beam_{n}" / "preds"), "--direct_num_workers", "2"],
                               work / f"beam_{n}.log")
        rows.append((n, jieba_s, jieba_rss, pred_s, pred_rss, beam_s, beam_rss, pred_cpu, beam_cpu))
    print(f"{'texts':>8} {'jieba alone':>18} {'predict --input (CPU ms/text)':>36} "
          f"{'batch_predict, 2 workers (CPU ms/text)':>42}")
    for n, js, jr, ps, pr, bs, br, pc, bc in rows:
        print(f"{n:>8} {n / js:>9.0f}/s {jr / 2**20:>5.0f} MB {n / ps:>12.0f}/s {pr / 2**20:>6.0f} MB "
              f"({1000 * pc / n:.2f}) {n / bs:>17.0f}/s {br / 2**20:>6.0f} MB ({1000 * bc / n:.2f})")
    n, _, _, ps, pr, bs, br, pc, bc = rows[-1]
    cores = os.cpu_count() or 1
    # The same work spread perfectly over every core can go no faster than cores / (CPU per text).
    ceiling = cores * n / pc
    print(f"\nceiling on {cores} cores for predict's work ({1000 * pc / n:.2f} CPU ms/text): {ceiling:.0f}/s = "
          f"{ceiling * ps / n:.2f}× predict; batch_predict reaches {100 * (n / bs) / ceiling:.0f} % of it")
    speedup = ps / bs
    print(f"\nbatch_predict vs predict at {n} texts: {speedup:.2f}× (target ≥ 1.5×): {'PASS' if speedup >= 1.5 else 'FAIL'}")
    growth = br / rows[0][6]
    print(f"batch_predict peak memory at {sizes[1]} vs {sizes[0]} texts: {growth:.2f}× (flat: ≤ 1.25×): "
          f"{'PASS' if growth <= 1.25 else 'FAIL'}; predict {pr / rows[0][4]:.2f}×")
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
