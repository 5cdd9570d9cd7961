"""Leave-one-domain-out adaptation: a model trained on the other domains, adapted to one domain with
few labels, beside TF-IDF baselines.

    python bench/bench_domain.py                              # online_shopping_10_cats, targets 书籍 蒙牛 计算机 酒店, 3 seeds
    python bench/bench_domain.py --targets 书籍 --seeds 1      # one target, one seed
    python bench/bench_domain.py --dataset bundled --targets hotel    # no external data: keyword domains

Datasets:

* ``online_shopping_10_cats`` (default; ``--data`` names the CSV, default
  ``../shared/datasets/online_shopping_10_cats/online_shopping_10_cats.csv``): ten real domains
  (its ``cat`` column), review-level labels.
* ``bundled``: ``data/reviews.csv`` has no domains, so a review is in a target domain (hotel, book,
  computer) when it names one of its keywords (``KEYWORDS``); a weaker shift than real domains.

The whole corpus is cleaned and de-duplicated first (conflicting labels dropped), so no text is in
two places. Then, for each target domain:

1. target test = a fixed, stratified 30 % of the domain; the rest is the target pool;
2. source = every other domain, a stratified sample of ``--source-size`` reviews (domain × label)
   when there are more; ``train`` (defaults) fits the source-only model on it, with its own
   train/val/test split — the *source test* measures forgetting;
3. target labels = nested, seeded samples of the pool: 100, 250, 500 and all of it; each is given
   to ``finetune --from <source model> --data <labels> --test-data <target test>`` (defaults, 15 %
   of the labels for early stopping);
4. baselines on the same labels: char 1–3-gram TF-IDF + LinearSVC on source + labels, and on the
   labels alone; the ceiling: ``train`` (from scratch) on the whole pool.

``--seeds N`` (default 3) repeats 2–4 with seeds 42, 43, … (the source model, the label samples, the
initialisation change; the target test set stays) and shows mean ± s.d. for every row. A learning-curve PNG per
target is written to the work directory, and every seed's rows to ``rows.json`` there as it finishes: a run
too long for one sitting goes seed by seed (``--seeds 1 --first-seed 43 --rows <first run>/rows.json``), and the
last one prints the mean ± s.d. over all of them (refused unless every other option is the same).

Targets (the issue's; mean over the targets at 500 labels): adapted ≥ the better TF-IDF row + 1 pt;
gain over source-only ≥ +8 pt on 书籍 and 蒙牛; source-test forgetting ≤ 1 pt on every target.
"""

from __future__ import annotations

import argparse
import contextlib
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

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "online_shopping_10_cats" / "online_shopping_10_cats.csv"
DEFAULT_TARGETS = {"online_shopping_10_cats": ["书籍", "蒙牛", "计算机", "酒店"], "bundled": ["hotel"]}
SIZES = ("100", "250", "500", "all")
MAIN = "500"  # the labels the targets are judged at
# Keyword domains of the bundled corpus (it has no domain column).
KEYWORDS = {
    "hotel": "酒店|宾馆|房间|前台|入住|客房|住宿",
    "book": "书|作者|阅读|小说|读者|出版|故事|作品",
    "computer": "电脑|笔记本|屏幕|键盘|系统|硬盘|内存|电池|驱动|显卡|散热|本本",
}


def load_corpus(dataset: str, path: str) -> pd.DataFrame:
    """text, label, domain — cleaned, de-duplicated, conflicting labels dropped."""
    from sentiment_tf.data.cleaning import clean_text

    if dataset == "bundled":
        raw = pd.read_csv(REPO / "data" / "reviews.csv")
        frame = pd.DataFrame({"text": raw["text"].astype(str), "label": raw["label"].astype(str), "domain": ""})
    else:
        if not Path(path).is_file():
            sys.exit(f"online_shopping_10_cats not found at {path}; pass --data FILE (see bench/README.md)")
        raw = pd.read_csv(path, encoding="utf-8-sig")
        raw = raw.dropna(subset=["review"])
        frame = pd.DataFrame({"text": raw["review"].astype(str), "label": raw["label"].astype(str),
                              "domain": raw["cat"].astype(str).str.replace("\ufeff", "", regex=False)})
    frame["text"] = [clean_text(t) for t in frame["text"]]
    frame = frame[frame["text"].str.len() > 0]
    conflicting = frame.groupby("text")["label"].transform("nunique") > 1
    frame = frame[~conflicting].drop_duplicates("text").reset_index(drop=True)
    print(f"corpus: {len(frame)} reviews after cleaning and de-duplication ({int(conflicting.sum())} rows with "
          "conflicting labels dropped)", file=sys.stderr)
    return frame


def in_target(corpus: pd.DataFrame, dataset: str, target: str) -> pd.Series:
    if dataset == "bundled":
        return corpus["text"].str.contains(KEYWORDS[target])
    return corpus["domain"] == target


def stratified_sample(frame: pd.DataFrame, n: int, by: list[str], seed: int) -> pd.DataFrame:
    if n >= len(frame):
        return frame
    from sklearn.model_selection import train_test_split

    strata = frame[by].astype(str).agg("|".join, axis=1)
    sample, _ = train_test_split(frame, train_size=n, random_state=seed, stratify=strata)
    return sample


def nested_labels(pool: pd.DataFrame, seed: int, sizes: list[str]) -> dict[str, pd.DataFrame]:
    """100 ⊂ 250 ⊂ 500 ⊂ all, in a seeded order with labels interleaved (every subset holds both)."""
    rng = np.random.default_rng(seed)
    shuffled = pool.iloc[rng.permutation(len(pool))]
    order = shuffled.assign(_r=shuffled.groupby("label").cumcount()).sort_values("_r", kind="stable").drop(columns="_r")
    return {n: order if n == "all" else order.head(int(n)) for n in sizes}  # a small pool: 500 = all of it


def tfidf(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """``experiments.tfidf_accuracy`` (char 1–3-gram TF-IDF + LinearSVC, C = 1) on text/label frames."""
    from sentiment_tf.data.splits import Y
    from sentiment_tf.models.experiments import tfidf_accuracy

    return tfidf_accuracy(train.assign(**{Y: train["label"].astype(str)}), test.assign(**{Y: test["label"].astype(str)}))


def quiet(log_path: Path):
    """The commands' own reports go to a log file; the table stays readable."""
    stack = contextlib.ExitStack()
    handle = stack.enter_context(open(log_path, "a", encoding="utf-8"))
    stack.enter_context(contextlib.redirect_stdout(handle))
    return stack


def defaults_fingerprint() -> str:
    """train's model and optimisation defaults: a cached source model trained with others is stale."""
    import dataclasses

    from sentiment_tf.core.config import ModelConfig, TokenizerConfig, TrainConfig
    from sentiment_tf.models import family

    train = dataclasses.asdict(family.train_config(TrainConfig(), "lstm"))
    # Options that, at these values, train exactly as before they existed: earlier caches stay valid.
    train = {k: v for k, v in train.items() if (k, v) not in {("unfreeze", "all"), ("lr_decay", 1.0),
                                                              ("calibration", True)}}
    return json.dumps([dataclasses.asdict(ModelConfig()), dataclasses.asdict(TokenizerConfig()), train],
                      sort_keys=True)


def cached(out: Path, name: str, digest: str, build, stale: tuple[str, ...]) -> None:
    """Runs ``build()`` unless ``out/<name>`` was built from the same inputs (``digest``) before;
    otherwise ``name`` and the ``stale`` directories of an earlier build are removed first."""
    stamp = out / f"{name}.sha256"
    if stamp.is_file() and stamp.read_text() == digest and (out / name).is_dir():
        return
    for old in (name, *stale):
        shutil.rmtree(out / old, ignore_errors=True)
    t0 = time.time()
    build()
    stamp.write_text(digest)
    (out / f"{name}_minutes.txt").write_text(f"{(time.time() - t0) / 60:.1f}")


def adapt_rows(source_model: Path, prefix: str, out: Path, labels_sets: dict, test_file: Path, seed: int,
               finetune_args: list[str]) -> dict[str, float]:
    """``finetune`` of one source model with each label set: target and source-test accuracies."""
    from sentiment_tf import finetune

    row: dict[str, float] = {}
    for name, labels_file in labels_sets.items():
        run, adapted = out / f"run_{prefix}adapt_{name}", out / f"{prefix}adapted_{name}"
        for old in (run, adapted):  # an earlier run's in --work-dir
            shutil.rmtree(old, ignore_errors=True)
        with quiet(out / "log.txt"):
            assert finetune.main(["--from", str(source_model), "--data", str(labels_file),
                                  "--test-data", str(test_file), "--val-size", "0.15", "--seed", str(seed),
                                  "--output", str(adapted), "--run-dir", str(run), *finetune_args]) == 0
        result = json.loads((run / "finetune_report.json").read_text(encoding="utf-8"))["results"]
        row[f"{prefix}source-only"] = result["domain"]["before"]["accuracy"]
        row[f"{prefix}source-only, source test"] = result["original"]["before"]["accuracy"]
        row[f"{prefix}finetune {name}"] = result["domain"]["after"]["accuracy"]
        row[f"{prefix}finetune {name}, source test"] = result["original"]["after"]["accuracy"]
    return row


def run_seed(target: str, seed: int, work: Path, source_file: Path, test_file: Path, pool: pd.DataFrame,
             sizes: list[str], finetune_args: list[str], lm: Path | None, dapt_epochs: int,
             teacher: dict | None = None) -> dict[str, float]:
    """Source-only model, its adaptations and the baselines for one seed: accuracies by row name.
    With ``lm`` also the ULMFiT path: the LM continued on the target pool's texts (no labels), a
    source model from it, and its adaptations (rows prefixed ``dapt``). With ``teacher`` (a BERT checkpoint,
    its source sample size and epochs) the distillation rows at 500 labels (``distillation_rows``)."""
    from sentiment_tf import pretrain, train
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import load_splits

    out = work / target / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(source_file.read_bytes() + defaults_fingerprint().encode()).hexdigest()
    with quiet(out / "log.txt"):
        # A source model trained on exactly this file (an earlier run in --work-dir) is reused.
        cached(out, "source_model", digest, lambda: train.main(
            ["--data", str(source_file), "--output", str(out / "source_model"), "--run-dir", str(out / "run_source"),
             "--seed", str(seed)]), stale=("run_source",))
    source_splits = load_splits(DataConfig(data=str(source_file), seed=seed))
    test = pd.read_csv(test_file)
    labels_sets = {}
    row: dict[str, float] = {}
    for name, labels in nested_labels(pool, seed, sizes).items():
        labels_sets[name] = out / f"labels_{name}.csv"
        labels.to_csv(labels_sets[name], index=False)
        row[f"tfidf source+{name}"] = tfidf(pd.concat([source_splits.train, labels]), test)
        row[f"tfidf {name} alone"] = tfidf(labels, test)
    row.update(adapt_rows(out / "source_model", "", out, labels_sets, test_file, seed, finetune_args))
    if lm is not None:
        pool_texts = out / "pool_texts.txt"  # the unlabelled target text the LM adapts to
        pool_texts.write_text("\n".join(pool["text"]), encoding="utf-8")
        lm_digest = hashlib.sha256(digest.encode() + pool_texts.read_bytes() + (lm / "lm.json").read_bytes()
                                   + str(dapt_epochs).encode()).hexdigest()

        def dapt() -> None:
            assert pretrain.main(["--model", "lstm", "--from", str(lm), "--corpus", str(pool_texts), "--output",
                                  str(out / "dapt_lm"), "--epochs", str(dapt_epochs), "--seed", str(seed),
                                  "--run-dir", str(out / "run_dapt_lm")]) == 0
            assert train.main(["--data", str(source_file), "--pretrained", str(out / "dapt_lm"), "--seed", str(seed),
                               "--output", str(out / "dapt_source_model"), "--run-dir", str(out / "run_dapt_source")]) == 0

        with quiet(out / "log.txt"):
            cached(out, "dapt_source_model", lm_digest, dapt, stale=("dapt_lm", "run_dapt_lm", "run_dapt_source"))
        row.update(adapt_rows(out / "dapt_source_model", "dapt ", out, labels_sets, test_file, seed, finetune_args))
    if teacher is not None:
        row.update(distillation_rows(out, seed, source_file, test_file, pool, labels_sets[MAIN], finetune_args,
                                     teacher))
    if "all" in sizes:
        for old in (out / "run_ceiling", out / "ceiling_model"):
            shutil.rmtree(old, ignore_errors=True)
        with quiet(out / "log.txt"):
            assert train.main(["--data", str(work / target / "pool.csv"), "--test-data", str(test_file),
                               "--output", str(out / "ceiling_model"), "--run-dir", str(out / "run_ceiling"),
                               "--seed", str(seed)]) == 0
        report = json.loads((out / "run_ceiling" / "report.json").read_text(encoding="utf-8"))
        row["lstm all alone"] = report["accuracy"]
    return row


def distillation_rows(out: Path, seed: int, source_file: Path, test_file: Path, pool: pd.DataFrame, labels_file: Path,
                      finetune_args: list[str], teacher: dict) -> dict[str, float]:
    """The teacher (a BERT checkpoint fine-tuned on a source sample, then adapted on ``labels_file``) and the
    source LSTM adapted on the same labels while distilling that teacher over the rest of the target pool."""
    from sentiment_tf import train

    source = pd.read_csv(source_file)
    sample = stratified_sample(source, teacher["source_size"], ["label"], seed)
    teacher_source = out / "teacher_source.csv"
    sample[["text", "label"]].to_csv(teacher_source, index=False)
    digest = hashlib.sha256(teacher_source.read_bytes() + str(teacher).encode() + defaults_fingerprint().encode()
                            ).hexdigest()
    with quiet(out / "log.txt"):
        cached(out, "teacher_source_model", digest, lambda: train.main(
            ["--model", "bert", "--pretrained", teacher["checkpoint"], "--data", str(teacher_source), "--max-length",
             "128", "--epochs", str(teacher["epochs"]), "--seed", str(seed), "--output",
             str(out / "teacher_source_model"), "--run-dir", str(out / "run_teacher_source")]),
            stale=("run_teacher_source",))
    row = adapt_rows(out / "teacher_source_model", "teacher ", out, {MAIN: labels_file}, test_file, seed, [])
    labelled = set(pd.read_csv(labels_file)["text"])
    unlabelled = out / "pool_unlabelled.txt"  # the target pool without its labels: the transfer set
    unlabelled.write_text("\n".join(t.replace("\n", " ") for t in pool["text"] if t not in labelled) + "\n",
                          encoding="utf-8")
    row.update(adapt_rows(out / "source_model", "distilled ", out, {MAIN: labels_file}, test_file, seed,
                          [*finetune_args, "--teacher", str(out / f"teacher adapted_{MAIN}"),
                           "--unlabelled", str(unlabelled)]))
    return row


def cell(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f}" + (f" ± {100 * np.std(values, ddof=1):.2f}" if len(values) > 1 else "")


def plot(target: str, rows: list[dict], names: list[str], pool_size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sentiment_tf.core import atomic
    from sentiment_tf.evaluation.report import chinese_rc

    plt.rcParams.update(chinese_rc())
    x = [min(int(n), pool_size) if n != "all" else pool_size for n in names]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label, marker in (("finetune {}", "finetune (LSTM)", "o"), ("tfidf source+{}", "TF-IDF source + labels", "s"),
                               ("tfidf {} alone", "TF-IDF labels alone", "^")):
        ax.plot(x, [np.mean([r[key.format(n)] for r in rows]) for n in names], marker=marker, label=label)
    if "dapt source-only" in rows[0]:
        ax.plot(x, [np.mean([r[f"dapt finetune {n}"] for r in rows]) for n in names], marker="D",
                label="LM + target-text LM, finetune")
    ax.axhline(np.mean([r["source-only"] for r in rows]), color="grey", ls="--", label="source-only LSTM")
    ax.set_xscale("log")
    ax.set_xlabel(f"{target} labels")
    ax.set_ylabel(f"{target} test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"leave-one-domain-out: {target}")
    atomic.savefig(fig, path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DEFAULT_TARGETS), default="online_shopping_10_cats")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="online_shopping_10_cats CSV (cat,label,review).")
    parser.add_argument("--targets", nargs="+", help="Target domains (default: 书籍 蒙牛 计算机 酒店; bundled: hotel).")
    parser.add_argument("--source-size", type=int, default=18000,
                        help="Stratified sample of the other domains used as the source (0 = all of them).")
    parser.add_argument("--seeds", type=int, default=3, help="Repeat with this many seeds; mean ± s.d.")
    parser.add_argument("--first-seed", type=int, default=42,
                        help="Seeds are --first-seed, --first-seed + 1, …; a later run can add seeds to an earlier "
                             "one's (--rows).")
    parser.add_argument("--rows", nargs="+", default=[],
                        help="rows.json files of earlier runs (in their work directories): their seeds join this "
                             "run's in every mean ± s.d.")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES,
                        help="Target label counts to adapt with ('all' adds the ceilings); 500 is always run.")
    parser.add_argument("--work-dir", help="Keep data, models and runs here (default: a temporary directory); a "
                                           "source model trained on the same data there is reused.")
    parser.add_argument("--lm", help="A general LSTM language model (pretrain --model lstm; e.g. a snapshot of "
                                     "bench_lstm_pretraining.py): adds the ULMFiT rows — the LM continued on the "
                                     "target pool's texts, a source model from it, and its finetune.")
    parser.add_argument("--dapt-epochs", type=int, default=3, help="Epochs of LM pretraining on the target's texts.")
    parser.add_argument("--teacher", help="A BERT checkpoint (e.g. m3e-small's directory; bench_distill.py downloads "
                                          "it): adds the teacher and distilled-student rows at 500 labels.")
    parser.add_argument("--teacher-source-size", type=int, default=4000,
                        help="Source reviews the teacher is fine-tuned on before the target labels.")
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("finetune_args", nargs="*", help="Extra finetune options, after --.")
    args = parser.parse_args()
    sizes = [n for n in SIZES if n in set(args.sizes) | {MAIN}]
    lm = Path(args.lm).resolve() if args.lm else None
    if lm is not None and not (lm / "lm.json").is_file():
        sys.exit(f"--lm {args.lm}: not an LSTM language model directory (no lm.json)")

    from sentiment_tf.core.errors import setup_logging

    setup_logging()
    corpus = load_corpus(args.dataset, args.data)
    domains = sorted(corpus["domain"].unique()) if args.dataset != "bundled" else sorted(KEYWORDS)
    targets = args.targets or DEFAULT_TARGETS[args.dataset]
    unknown = [t for t in targets if t not in domains]
    if unknown:
        sys.exit(f"--targets {' '.join(unknown)}: not a domain of {args.dataset} ({' '.join(domains)})")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_domain_"))
    from sklearn.model_selection import train_test_split

    from sentiment_tf.core import atomic

    # Rows are only comparable between runs of the same protocol: every option but the seeds must match.
    # The corpus by its content and the checkpoints by name: paths differ between machines.
    run_args = {k: (Path(v).name if k in ("teacher", "lm") and v else v) for k, v in sorted(vars(args).items())
                if k not in ("seeds", "first_seed", "rows", "work_dir", "data")}
    run_args["data_sha256"] = hashlib.sha256(Path(args.data).read_bytes()).hexdigest() if args.dataset != "bundled" \
        else None
    earlier: dict[str, dict[str, dict]] = {}
    for path in args.rows:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        if saved["args"] != run_args:
            diff = sorted(k for k in run_args if saved["args"].get(k) != run_args[k])
            sys.exit(f"--rows {path}: an earlier run with other options ({', '.join(diff)}); its rows do not compare")
        for target, by_seed in saved["rows"].items():
            for seed, row in by_seed.items():
                if args.first_seed <= int(seed) < args.first_seed + args.seeds:
                    sys.exit(f"--rows {path}: seed {seed} is also run here; choose another --first-seed")
                earlier.setdefault(target, {})[seed] = row
    mine: dict[str, dict[str, dict]] = {}
    results: dict[str, list[dict]] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    for target in targets:
        mask = in_target(corpus, args.dataset, target)
        domain = corpus[mask]
        source = corpus[~mask]
        if args.source_size and args.dataset != "bundled":
            source = stratified_sample(source, args.source_size, ["domain", "label"], 42)
        pool, test = train_test_split(domain, test_size=0.3, random_state=42, stratify=domain["label"])
        (work / target).mkdir(parents=True, exist_ok=True)
        source_file, test_file = work / target / "source.csv", work / target / "test.csv"
        source[["text", "label"]].to_csv(source_file, index=False)
        test[["text", "label"]].to_csv(test_file, index=False)
        pool[["text", "label"]].to_csv(work / target / "pool.csv", index=False)
        counts[target] = (len(source), len(pool), len(test))
        teacher = ({"checkpoint": str(Path(args.teacher).resolve()), "source_size": args.teacher_source_size,
                    "epochs": args.teacher_epochs} if args.teacher else None)
        results[target] = [earlier[target][seed] for seed in sorted(earlier.get(target, {}))]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            results[target].append(run_seed(target, seed, work, source_file, test_file, pool[["text", "label"]],
                                            sizes, args.finetune_args, lm, args.dapt_epochs, teacher))
            mine.setdefault(target, {})[str(seed)] = results[target][-1]
            atomic.write_text(work / "rows.json", json.dumps({"args": run_args, "rows": mine}, ensure_ascii=False,
                                                             indent=1))
        plot(target, results[target], sizes, len(pool), work / target / "learning_curve.png")
        print_target(target, results[target], sizes, counts[target])
    seeds = sorted({int(s) for by_seed in (*earlier.values(), *mine.values()) for s in by_seed})
    print(f"\nseeds: {', '.join(map(str, seeds))}" + (f" ({len(args.rows)} earlier run(s) via --rows)" if args.rows else ""))
    print_summary(results, targets, args)
    print(f"\nwork directory (logs, models, learning_curve.png per target): {work}")


def print_target(target: str, rows: list[dict], names: list[str], size: tuple[int, int, int]) -> None:
    n_source, n_pool, n_test = size
    print(f"\n{target}: source {n_source} reviews of the other domains; target pool {n_pool}, test {n_test}; "
          f"{len(rows)} seed{'s' if len(rows) > 1 else ''} — accuracy (%)")
    print(f"{'row':<44}{'target test':>16}{'source test':>16}")
    print(f"{'source-only LSTM':<44}{cell([r['source-only'] for r in rows]):>16}"
          f"{cell([r['source-only, source test'] for r in rows]):>16}")
    for n in names:
        label = f"finetune, {n} labels" if n != "all" else f"finetune, all {n_pool} labels (ceiling)"
        print(f"{label:<44}{cell([r[f'finetune {n}'] for r in rows]):>16}"
              f"{cell([r[f'finetune {n}, source test'] for r in rows]):>16}")
    if "dapt source-only" in rows[0]:
        print(f"{'LM + target-text LM → source model':<44}{cell([r['dapt source-only'] for r in rows]):>16}"
              f"{cell([r['dapt source-only, source test'] for r in rows]):>16}")
        for n in names:
            print(f"{'  … finetune, ' + n + ' labels':<44}{cell([r[f'dapt finetune {n}'] for r in rows]):>16}"
                  f"{cell([r[f'dapt finetune {n}, source test'] for r in rows]):>16}")
    if f"teacher finetune {MAIN}" in rows[0]:
        for key, label in (("teacher source-only", "teacher (BERT) on the source sample"),
                           (f"teacher finetune {MAIN}", f"  … finetune, {MAIN} labels (the teacher)"),
                           (f"distilled finetune {MAIN}", f"LSTM finetune {MAIN} + teacher over the pool")):
            print(f"{label:<44}{cell([r[key] for r in rows]):>16}{cell([r[key + ', source test'] for r in rows]):>16}")
    for n in names:
        print(f"{'TF-IDF source + ' + n + ' labels':<44}{cell([r[f'tfidf source+{n}'] for r in rows]):>16}")
        print(f"{'TF-IDF ' + n + ' labels alone':<44}{cell([r[f'tfidf {n} alone'] for r in rows]):>16}")
    if "all" in names:
        print(f"{'LSTM from scratch, all ' + str(n_pool) + ' labels (ceiling)':<44}"
              f"{cell([r['lstm all alone'] for r in rows]):>16}")


def print_summary(results: dict[str, list[dict]], targets: list[str], args) -> None:
    def mean(target: str, key: str) -> float:
        return 100 * float(np.mean([r[key] for r in results[target]]))

    main = MAIN
    pipelines = [("finetune (from scratch source model)", "")]
    if "dapt source-only" in results[targets[0]][0]:
        pipelines.append(("LM + target-text LM → source model → finetune", "dapt "))
    if f"distilled finetune {main}" in results[targets[0]][0]:
        pipelines += [("the teacher: BERT fine-tuned on a source sample, then finetune", "teacher "),
                      ("the student: source LSTM → finetune --teacher over the target pool (issue 31)", "distilled ")]
    best = max(np.mean([mean(t, f"tfidf source+{main}") for t in targets]),
               np.mean([mean(t, f"tfidf {main} alone") for t in targets]))
    for title, p in pipelines:
        print(f"\nsummary at {MAIN} target labels (mean over seeds), accuracy (%): {title}")
        print(f"{'target':<10}{'source-only':>12}{'adapted':>10}{'gain':>8}{'TF-IDF src+':>13}{'TF-IDF alone':>14}"
              f"{'forgetting':>12}")
        for t in targets:
            # The gain is over the from-scratch source model: what a user has before adapting.
            gain = mean(t, f"{p}finetune {main}") - mean(t, "source-only")
            forget = mean(t, f"{p}source-only, source test") - mean(t, f"{p}finetune {main}, source test")
            print(f"{t:<10}{mean(t, f'{p}source-only'):>12.2f}{mean(t, f'{p}finetune {main}'):>10.2f}{gain:>+8.2f}"
                  f"{mean(t, f'tfidf source+{main}'):>13.2f}{mean(t, f'tfidf {main} alone'):>14.2f}{forget:>12.2f}")
        ours = np.mean([mean(t, f"{p}finetune {main}") for t in targets])
        print(f"mean over {', '.join(targets)}: {ours:.2f} vs the better TF-IDF row {best:.2f}: "
              f"{ours - best:+.2f} pt (target ≥ +1) {'PASS' if ours - best >= 1 else 'FAIL'}")
        for t in ("书籍", "蒙牛"):
            if t in targets:
                gain = mean(t, f"{p}finetune {main}") - mean(t, "source-only")
                print(f"gain over the from-scratch source-only model on {t}: {gain:+.2f} pt (target ≥ +8) "
                      f"{'PASS' if gain >= 8 else 'FAIL'}")
        worst = max(mean(t, f"{p}source-only, source test") - mean(t, f"{p}finetune {main}, source test")
                    for t in targets)
        print(f"source-test forgetting, worst target: {worst:.2f} pt (target ≤ 1) {'PASS' if worst <= 1 else 'FAIL'}")
    if args.finetune_args:
        print(f"finetune options: {' '.join(args.finetune_args)}")


if __name__ == "__main__":
    main()
