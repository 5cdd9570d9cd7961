"""Which texts to label: each `select` strategy against random, and whether `monitor` sees the shift,
on online_shopping_10_cats leave-one-domain-out (bench_domain.py's splits).

    python bench/bench_select.py                         # targets 书籍 蒙牛 计算机 酒店, budgets 100 250 500
    python bench/bench_select.py --targets 书籍 --work-dir /tmp/bs

Per target: the source-only model (`train`, defaults, on the same 18,000-review sample of the other
nine domains as bench_domain.py); its target pool *without labels* goes to `select --strategy S
--budget N`; the chosen texts get their gold labels and `finetune --from <source model>` (defaults,
15 % of them for early stopping) is scored on the fixed target test split. Random runs with three
selection seeds (mean ± std); the finetune seed is fixed.

Monitor: `monitor --model <source model>` on the target's test texts (a new domain: expect exit 1),
and on 3,000 held-out reviews of the source domains the source model never saw (expect exit 0).

Target (issue 20): hybrid with 250 labels ≥ random with 500 on at least three of the four targets;
the monitor flags every target domain and does not flag the source's held-out texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.bench_domain import (  # noqa: E402
    DEFAULT_DATA,
    cached,
    defaults_fingerprint,
    in_target,
    load_corpus,
    quiet,
    stratified_sample,
)

TARGETS = ["书籍", "蒙牛", "计算机", "酒店"]
STRATEGIES = ["random", "uncertainty", "diverse", "hybrid"]
BUDGETS = [100, 250, 500]
RANDOM_SEEDS = [42, 43, 44]
HELD_OUT = 3000
EXPORT_FORMAT = "embed+profile"  # source models exported before select/monitor existed lack both


def finetune_accuracy(source_model: Path, labels: pd.DataFrame, test_file: Path, out: Path, name: str) -> dict:
    from sentiment_tf import finetune

    labels_file, run, adapted = out / f"labels_{name}.csv", out / f"run_{name}", out / f"adapted_{name}"
    labels[["text", "label"]].to_csv(labels_file, index=False)
    for old in (run, adapted):
        shutil.rmtree(old, ignore_errors=True)
    t0 = time.time()
    with quiet(out / "log.txt"):
        assert finetune.main(["--from", str(source_model), "--data", str(labels_file), "--test-data", str(test_file),
                              "--val-size", "0.15", "--seed", "42", "--output", str(adapted), "--run-dir", str(run)]) == 0
    result = json.loads((run / "finetune_report.json").read_text(encoding="utf-8"))["results"]
    shutil.rmtree(adapted, ignore_errors=True)  # ~10 MB each, 72 of them
    return {"accuracy": result["domain"]["after"]["accuracy"], "source_only": result["domain"]["before"]["accuracy"],
            "source_test_after": result["original"]["after"]["accuracy"], "seconds": time.time() - t0}


def select(source_model: Path, pool_file: Path, strategy: str, budget: int, seed: int, out: Path) -> tuple[pd.DataFrame, float]:
    from sentiment_tf import select as select_cmd

    chosen = out / f"chosen_{strategy}_{budget}_{seed}.csv"
    t0 = time.time()
    with quiet(out / "log.txt"):
        assert select_cmd.main(["--model", str(source_model), "--unlabelled", str(pool_file), "--budget", str(budget),
                                "--strategy", strategy, "--seed", str(seed),
                                "--output", str(chosen)]) == 0
    return pd.read_csv(chosen, dtype={"row": int}), time.time() - t0


def monitor(source_model: Path, texts: pd.DataFrame, out: Path, name: str) -> tuple[int, dict]:
    from sentiment_tf import monitor as monitor_cmd

    path = out / f"monitor_{name}.csv"
    texts[["text"]].to_csv(path, index=False)
    with quiet(out / "log.txt"):
        code = monitor_cmd.main(["--model", str(source_model), "--data", str(path), "--output", str(out / f"monitor_{name}")])
    report = json.loads((out / f"monitor_{name}" / "drift.json").read_text(encoding="utf-8"))
    return code, {c["check"]: c for c in report["checks"]}


def run_target(target: str, corpus: pd.DataFrame, work: Path, source_size: int, budgets: list[int]) -> dict:
    from sklearn.model_selection import train_test_split

    from sentiment_tf import train

    mask = in_target(corpus, "online_shopping_10_cats", target)
    domain, others = corpus[mask], corpus[~mask]
    source = stratified_sample(others, source_size, ["domain", "label"], 42)  # bench_domain.py's sample
    held_out = stratified_sample(others.drop(source.index), HELD_OUT, ["domain", "label"], 7)
    pool, test = train_test_split(domain, test_size=0.3, random_state=42, stratify=domain["label"])
    out = work / target
    out.mkdir(parents=True, exist_ok=True)
    source_file, test_file, pool_file = out / "source.csv", out / "test.csv", out / "pool_unlabelled.csv"
    source[["text", "label"]].to_csv(source_file, index=False)
    test[["text", "label"]].to_csv(test_file, index=False)
    pool = pool.reset_index(drop=True).assign(row=lambda f: np.arange(len(f)))
    pool[["row", "text"]].to_csv(pool_file, index=False)  # no labels: select sees what a user has

    digest = hashlib.sha256(source_file.read_bytes() + defaults_fingerprint().encode() + EXPORT_FORMAT.encode()).hexdigest()
    with quiet(out / "log.txt"):
        cached(out, "source_model", digest, lambda: train.main(
            ["--data", str(source_file), "--output", str(out / "source_model"), "--run-dir", str(out / "run_source"),
             "--seed", "42"]), stale=("run_source",))
    model = out / "source_model"
    result: dict = {"pool": len(pool), "test": len(test), "rows": {}, "select_seconds": {}, "finetune_seconds": []}
    for strategy in STRATEGIES:
        for budget in budgets:
            for seed in (RANDOM_SEEDS if strategy == "random" else [42]):
                chosen, seconds = select(model, pool_file, strategy, budget, seed, out)
                labels = pool.set_index("row").loc[chosen["row"], ["text", "label"]]
                scored = finetune_accuracy(model, labels, test_file, out, f"{strategy}_{budget}_{seed}")
                result["rows"].setdefault(strategy, {}).setdefault(str(budget), []).append(scored["accuracy"])
                result["select_seconds"].setdefault(strategy, []).append(seconds)
                result["finetune_seconds"].append(scored["seconds"])
                result["source_only"] = scored["source_only"]
                print(f"  {target} {strategy:<11} {budget:>4} seed {seed}: {100 * scored['accuracy']:.2f}  "
                      f"(select {seconds:.0f}s, finetune {scored['seconds']:.0f}s)", file=sys.stderr, flush=True)
    result["monitor"] = {"target test": monitor(model, test, out, "target"),
                         "source held-out": monitor(model, held_out, out, "heldout")}
    (out / "select_result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return result


def cell(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f}" + (f" ± {100 * np.std(values, ddof=1):.2f}" if len(values) > 1 else "")


def plot(results: dict[str, dict], budgets: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sentiment_tf.evaluation import report

    with plt.rc_context(report.chinese_rc()):
        fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
        for ax, (target, r) in zip(axes[0], results.items()):
            for strategy in STRATEGIES:
                acc = [r["rows"][strategy][str(b)] for b in budgets]
                ax.errorbar(budgets, [100 * np.mean(a) for a in acc],
                            yerr=[100 * np.std(a, ddof=1) if len(a) > 1 else 0 for a in acc], marker="o", capsize=3,
                            label=strategy)
            ax.axhline(100 * r["source_only"], color="0.6", ls=":", label="source-only")
            ax.set_title(f"{target} (pool {r['pool']}, test {r['test']})")
            ax.set_xlabel("labelled target texts")
            ax.set_ylabel("target test accuracy (%)")
            ax.set_xticks(budgets)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="online_shopping_10_cats CSV (cat,label,review).")
    parser.add_argument("--targets", nargs="+", default=TARGETS)
    parser.add_argument("--budgets", nargs="+", type=int, default=BUDGETS)
    parser.add_argument("--source-size", type=int, default=18000)
    parser.add_argument("--work-dir", help="Keep data, models and runs here (a source model trained there is reused).")
    args = parser.parse_args()
    if 250 not in args.budgets or 500 not in args.budgets:
        sys.exit("--budgets must include 250 and 500 (the target compares them)")
    from sentiment_tf.core.errors import setup_logging

    setup_logging()
    corpus = load_corpus("online_shopping_10_cats", args.data)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_select_"))
    results = {t: run_target(t, corpus, work, args.source_size, sorted(args.budgets)) for t in args.targets}
    plot(results, sorted(args.budgets), work / "select_curves.png")

    budgets = sorted(args.budgets)
    print(f"\ntarget test accuracy (%) after finetune with N selected labels; random: mean ± std of "
          f"{len(RANDOM_SEEDS)} selection seeds")
    print(f"{'target':<8}{'strategy':<13}" + "".join(f"{b:>16}" for b in budgets))
    wins = 0
    for target, r in results.items():
        print(f"{target:<8}{'source-only':<13}{100 * r['source_only']:>16.2f}")
        for strategy in STRATEGIES:
            print(f"{'':<8}{strategy:<13}" + "".join(f"{cell(r['rows'][strategy][str(b)]):>16}" for b in budgets))
        hybrid250, random500 = np.mean(r["rows"]["hybrid"]["250"]), np.mean(r["rows"]["random"]["500"])
        wins += hybrid250 >= random500
        print(f"{'':<8}hybrid 250 − random 500: {100 * (hybrid250 - random500):+.2f} pt")
    print(f"\nhybrid with 250 ≥ random with 500 on {wins} of {len(results)} targets (target: ≥ 3 of 4): "
          f"{'PASS' if wins >= min(3, len(results)) else 'FAIL'}")
    mean_select = {s: np.mean([x for r in results.values() for x in r["select_seconds"][s]]) for s in STRATEGIES}
    print("select seconds per call (mean; includes loading the model): "
          + ", ".join(f"{s} {v:.1f}" for s, v in mean_select.items()))

    print("\nmonitor of the source-only model (exit code; drifted checks)")
    ok = True
    for target, r in results.items():
        for name, expected in (("target test", 1), ("source held-out", 0)):
            code, checks = r["monitor"][name]
            ok &= code == expected
            flagged = ", ".join(f"{k} {c['value']:.3f}" for k, c in checks.items() if c["drift"]) or "none"
            print(f"{target:<8}{name:<17} exit {code} (want {expected}); drift: {flagged}; "
                  f"OOV {checks['oov rate']['current']} vs {checks['oov rate']['reference']}, "
                  f"length PSI {checks['length (tokens)']['value']:.3f}")
    print(f"monitor flags every target and no held-out source sample: {'PASS' if ok else 'FAIL'}")
    print(f"\nwork directory (select_curves.png, logs, selections): {work}")


if __name__ == "__main__":
    main()
