"""Cross-domain benchmark: adapt a general-review LSTM to one domain (hotel by default) with 500 labels.

    python bench/bench_domain.py                  # about 2 minutes on 2 CPU cores
    python bench/bench_domain.py --seeds 3        # three source models and adaptations, mean ± std
    python bench/bench_domain.py --ceiling        # also train on every labelled target review of the pool
    python bench/bench_domain.py --target book    # books as the target domain (or computer)

Domains: the bundled corpus has no domain column, so one is assigned by keywords (``DOMAINS``).
A review is **hotel** when it mentions 酒店, 宾馆, 房间, 前台, 入住, 客房 or 住宿 (≈5.4k of 17.4k
reviews); **book** and **computer** likewise by their own keywords. Every review that does not match
the target's keywords (the other domains, and lines that name no domain) is **source**. In one run
(with "hotel" standing for the target):

1. source-only: `train` on the source reviews (default LSTM, its own seeded train/val/test split);
2. target data: the hotel reviews split into a fixed test set (20 %) and a pool; 500 labelled
   hotel reviews are drawn from the pool (85 % train, 15 % validation for early stopping);
3. adapted: `finetune --from <source export> --data <500 hotel labels> --test-data <hotel test>`
   with the default settings plus replay of 1,000 source training examples;
4. baseline: character 1–3-gram TF-IDF + LinearSVC trained on the source training split plus the
   same 500 hotel labels.

With ``--seeds N`` steps 1 and 3 run N times (seeds 42, 43, …: the source split, initialisation
and batch order change; the hotel data stay fixed) and the table shows mean ± std: one source
model's accuracy on an unseen domain varies by several points with its seed alone.

Targets (issue #4): adapted ≥ source-only + 8 points on the hotel test set; adapted > TF-IDF
baseline; source test accuracy drops ≤ 1 point after adaptation.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Keywords that assign a review to a domain. Lines of a review that name none of them (for example
# "服务态度很好" from a hotel review) fall into the source set, so the shift is milder than the
# domains' names suggest; book reviews share the fewest words with the rest (86.4 % of book word
# occurrences are in the other reviews' vocabulary, against 88.7 % for hotel and 90.2 % for computer).
DOMAINS = {
    "hotel": "酒店|宾馆|房间|前台|入住|客房|住宿",
    "book": "书|作者|阅读|小说|读者|出版|故事|作品",
    "computer": "电脑|笔记本|屏幕|键盘|系统|硬盘|内存|电池|驱动|显卡|散热|本本",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=sorted(DOMAINS), default="hotel", help="Target domain.")
    parser.add_argument("--labels", type=int, default=500, help="Target-domain labels available for adaptation.")
    parser.add_argument("--replay", type=int, default=1000, help="Source examples replayed during adaptation.")
    parser.add_argument("--self-train", action="store_true",
                        help="Also pass the unlabelled rest of the target pool to finetune --unlabelled.")
    parser.add_argument("--seeds", type=int, default=1, help="Source models (and adaptations) to train.")
    parser.add_argument("--ceiling", action="store_true",
                        help="Also train on ALL labelled target reviews of the pool (not just --labels of them), "
                             "target-only and with the source reviews: how far the models get with more labels.")
    parser.add_argument("--work-dir", help="Keep data, models and runs here (default: a temporary directory).")
    parser.add_argument("finetune_args", nargs="*", help="Extra finetune options, after --.")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from sentiment_tf import finetune, train
    from sentiment_tf.data import load_splits
    from sentiment_tf.config import DataConfig
    from sentiment_tf.experiments import tfidf_accuracy

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_domain_"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = pd.read_csv(REPO / "data" / "reviews.csv")
    target = args.target
    is_target = corpus["text"].str.contains(DOMAINS[target])
    source, domain = corpus[~is_target], corpus[is_target]
    target_pool, target_test = train_test_split(domain, test_size=0.2, random_state=42, stratify=domain["label"])
    target_labels, _ = train_test_split(target_pool, train_size=args.labels, random_state=42,
                                       stratify=target_pool["label"])
    target_unlabelled = target_pool[~target_pool["text"].isin(set(target_labels["text"]))][["text"]]
    for name, frame in (("source", source), ("target_test", target_test), ("target_labels", target_labels),
                        ("target_unlabelled", target_unlabelled), ("target_pool", target_pool),
                        ("source_and_target_pool", pd.concat([source, target_pool]))):
        frame.to_csv(work / f"{name}.csv", index=False)

    # 4. TF-IDF baseline on the source training split + the same target labels (train part).
    src = load_splits(DataConfig(data=str(work / "source.csv")))
    dom = load_splits(DataConfig(data=str(work / "target_labels.csv"), test_data=str(work / "target_test.csv"),
                                 val_size=0.15), labels=src.labels)
    tfidf = tfidf_accuracy(pd.concat([src.train, dom.train], ignore_index=True), dom.test)
    tfidf_src = tfidf_accuracy(pd.concat([src.train, dom.train], ignore_index=True), src.test)

    rows = []  # per seed: target before, source before, target after, source after
    for seed in range(42, 42 + args.seeds):
        out = work / f"seed{seed}"
        # 1. Source-only model.
        assert train.main(["--data", str(work / "source.csv"), "--output", str(out / "source_model"),
                           "--run-dir", str(out / "run_source"), "--seed", str(seed)]) == 0
        # 3. Adapted with the target labels (+ replay), evaluated before/after on both test sets.
        assert finetune.main([
            "--from", str(out / "source_model"), "--data", str(work / "target_labels.csv"),
            "--test-data", str(work / "target_test.csv"), "--val-size", "0.15", "--seed", str(seed),
            "--replay", str(args.replay), "--output", str(out / "adapted_model"), "--run-dir", str(out / "run_adapt"),
            *args.finetune_args,
            *(["--unlabelled", str(work / "target_unlabelled.csv")] if args.self_train else [])]) == 0
        result = json.loads((out / "run_adapt" / "finetune_report.json").read_text(encoding="utf-8"))["results"]
        d, o = result["domain"], result["original"]
        rows.append([d["before"]["accuracy"], o["before"]["accuracy"], d["after"]["accuracy"], o["after"]["accuracy"]])
    acc = np.array(rows)

    def cell(column: int) -> str:
        values = acc[:, column]
        return f"{values.mean():.4f}" + (f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else "")

    print(f"\nsentiment_tf cross-domain benchmark — source: {len(source)} non-{target} reviews; target: {target} "
          f"({len(domain)} reviews, {len(dom.test)} in the test set); {args.labels} {target} labels "
          f"({len(dom.train)} train / {len(dom.val)} val); replay {args.replay}; "
          f"{args.seeds} seed{'s' if args.seeds > 1 else ''}")
    if args.seeds > 1:
        print(f"per seed ({target} before → after, source before → after): " + "; ".join(
            f"{42 + i}: {r[0]:.4f} → {r[2]:.4f}, {r[1]:.4f} → {r[3]:.4f}" for i, r in enumerate(rows)))
    print(f"{'model':<52}{target + ' test acc':>20}{'source test acc':>20}")
    print(f"{'source-only LSTM':<52}{cell(0):>20}{cell(1):>20}")
    print(f"{'adapted LSTM (finetune, ' + str(args.labels) + f' {target} labels)':<52}{cell(2):>20}{cell(3):>20}")
    print(f"{'TF-IDF + LinearSVC on source + ' + target + ' labels':<52}{tfidf:>20.4f}{tfidf_src:>20.4f}")
    gain = 100 * (acc[:, 2] - acc[:, 0]).mean()
    vs_tfidf = 100 * (acc[:, 2].mean() - tfidf)
    forgetting = 100 * (acc[:, 1] - acc[:, 3]).mean()
    mean = " (mean over seeds)" if args.seeds > 1 else ""
    print(f"\ngain over source-only: {gain:+.2f} points{mean} (target ≥ +8) {'PASS' if gain >= 8 else 'FAIL'}")
    print(f"vs TF-IDF baseline:    {vs_tfidf:+.2f} points{mean} (target > 0) {'PASS' if vs_tfidf > 0 else 'FAIL'}")
    print(f"source-test loss:      {forgetting:.2f} points{mean} (target ≤ 1) {'PASS' if forgetting <= 1 else 'FAIL'}")
    if args.ceiling:
        # Not an adaptation: the same `train` run and TF-IDF baseline, given every pool label.
        print(f"\nceiling: all {len(target_pool)} labelled {target} reviews of the pool "
              f"({len(target_pool) / args.labels:.1f}× --labels), same {target} test set")
        for name, label in (("target_pool", f"{target} pool only"), ("source_and_target_pool", f"source + {target} pool")):
            data = load_splits(DataConfig(data=str(work / f"{name}.csv"), test_data=str(work / "target_test.csv")))
            with contextlib.redirect_stdout(io.StringIO()):  # its report would interrupt the table
                assert train.main(["--data", str(work / f"{name}.csv"), "--test-data", str(work / "target_test.csv"),
                                   "--output", str(work / f"ceiling_{name}"), "--run-dir", str(work / f"run_{name}")]) == 0
            report = json.loads((work / f"run_{name}" / "report.json").read_text(encoding="utf-8"))
            print(f"{'LSTM trained on ' + label:<52}{report['accuracy']:>20.4f}")
            print(f"{'TF-IDF + LinearSVC on ' + label:<52}{tfidf_accuracy(data.train, data.test):>20.4f}")
    print(f"\nwork directory: {work}")


if __name__ == "__main__":
    main()
