"""Evaluation protocols for adaptation — a learning curve against a TF-IDF baseline, k-fold
cross-validation, repeated seeds — and the baselines themselves (the benchmarks use them too)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.core.config import AdaptConfig, DataConfig, TrainConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.splits import LABEL, TEXT, Splits, Y
from sentiment_tf.evaluation import report
from sentiment_tf.models.adaptation import Source, adapt

log = logging.getLogger(__name__)


def score(trained_or_source: Any, frame: pd.DataFrame, labels: list[str]) -> report.Evaluation:
    return report.evaluate(frame[Y].to_numpy(), trained_or_source.predict_proba(frame[TEXT].tolist()), labels)


def tfidf_accuracy(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """Character 1–3-gram TF-IDF + LinearSVC (the baseline of bench/bench_lstm.py)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    svm = LinearSVC().fit(vec.fit_transform(train[TEXT]), train[Y])
    return float((svm.predict(vec.transform(test[TEXT])) == test[Y].to_numpy()).mean())


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


def _curve_subsets(train: pd.DataFrame, sizes: list[int], seed: int) -> dict[int, pd.DataFrame]:
    """Nested subsets (each contains the smaller ones) in a seeded order with labels interleaved, so
    even a small subset holds every label."""
    rng = np.random.default_rng(seed)
    shuffled = train.iloc[rng.permutation(len(train))]
    interleaved = shuffled.assign(_rank=shuffled.groupby(LABEL).cumcount()).sort_values("_rank", kind="stable")
    interleaved = interleaved.drop(columns="_rank")
    return {n: interleaved.head(n) for n in sizes}


def learning_curve(source: Source, domain: Splits, original: Splits | None, cfg: AdaptConfig, train_cfg: TrainConfig,
                   run_dir: Path) -> int:
    sizes = cfg.curve_sizes()
    if sizes[-1] > len(domain.train):
        raise UserError(f"--learning-curve {sizes[-1]}: the domain training split has only {len(domain.train)} "
                        "texts")
    labels = source.labels
    base_train = original.train if original is not None else domain.train.head(0)
    rows = []
    for n, subset in _curve_subsets(domain.train, sizes, 0).items():
        if n == 0:
            model_acc = score(source.load(), domain.test, labels).accuracy
        else:
            adapted = adapt(source, subset, domain.val, cfg, train_cfg, run_dir / f"n{n}", 0)
            model_acc = score(adapted, domain.test, labels).accuracy
        pool = pd.concat([base_train, subset], ignore_index=True)
        tfidf = tfidf_accuracy(pool, domain.test) if pool[Y].nunique() > 1 else float("nan")
        rows.append({"labels": n, "model_accuracy": model_acc, "tfidf_accuracy": tfidf})
        log.info("learning curve: %d labels → model %.4f, TF-IDF %.4f", n, model_acc, tfidf)
    print(f"\nlearning curve on the domain test split ({len(domain.test)} texts); TF-IDF is trained on "
          f"{'the original training split + ' if original is not None else ''}the same domain labels")
    print(f"{'domain labels':>14}{'adapted ' + source.family:>16}{'TF-IDF':>10}")
    for r in rows:
        print(f"{r['labels']:>14}{r['model_accuracy']:>16.4f}{r['tfidf_accuracy']:>10.4f}")
    atomic.write_json(run_dir / "learning_curve.json", rows)
    plot_curve(rows, source.family, run_dir / "learning_curve.png")
    print(f"\nplot: {run_dir / 'learning_curve.png'}")
    return 0


def plot_curve(rows: list[dict], family: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["labels"] for r in rows]
    ax.plot(x, [r["model_accuracy"] for r in rows], marker="o", label=f"adapted {family}")
    ax.plot(x, [r["tfidf_accuracy"] for r in rows], marker="s", label="TF-IDF + LinearSVC")
    ax.set_xlabel("domain training labels")
    ax.set_ylabel("domain test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    atomic.savefig(fig, path)
    plt.close(fig)


def cross_validate(source: Source, domain: Splits, data_cfg: DataConfig, cfg: AdaptConfig, train_cfg: TrainConfig,
                   run_dir: Path) -> int:
    """K folds over all domain rows: each fold is the test set once; the rest is split into train/val."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    pool = pd.concat([domain.train, domain.val, domain.test], ignore_index=True)
    if pool[LABEL].value_counts().min() < cfg.cv:
        raise UserError(f"--cv {cfg.cv}: every label needs at least {cfg.cv} domain examples")
    folds = StratifiedKFold(cfg.cv, shuffle=True, random_state=data_cfg.seed)
    rows = []
    for k, (rest_idx, test_idx) in enumerate(folds.split(pool, pool[LABEL]), start=1):
        rest, test = pool.iloc[rest_idx], pool.iloc[test_idx]
        train, val = train_test_split(rest, test_size=data_cfg.val_size, random_state=data_cfg.seed,
                                      stratify=rest[LABEL])
        ev = score(adapt(source, train, val, cfg, train_cfg, run_dir / f"fold{k}", data_cfg.seed), test,
                   source.labels)
        rows.append({"fold": k, "accuracy": ev.accuracy, "weighted_f1": ev.weighted_f1, "test_size": ev.support})
        log.info("fold %d/%d: accuracy %.4f, weighted F1 %.4f", k, cfg.cv, ev.accuracy, ev.weighted_f1)
    return _print_repeats(f"{cfg.cv}-fold cross-validation", "fold", rows, run_dir / "cv.json")


def repeat_seeds(source: Source, domain: Splits, original: Splits | None, cfg: AdaptConfig, train_cfg: TrainConfig,
                 seed: int, run_dir: Path) -> int:
    rows = []
    for s in range(seed, seed + cfg.seeds):
        adapted = adapt(source, domain.train, domain.val, cfg, train_cfg, run_dir / f"seed{s}", s)
        ev = score(adapted, domain.test, source.labels)
        row = {"seed": s, "accuracy": ev.accuracy, "weighted_f1": ev.weighted_f1}
        if original is not None:
            row["original_accuracy"] = score(adapted, original.test, source.labels).accuracy
        rows.append(row)
    return _print_repeats(f"{cfg.seeds} seeds, same split", "seed", rows, run_dir / "seeds.json")


def _print_repeats(title: str, key: str, rows: list[dict], path: Path) -> int:
    metrics = [m for m in ("accuracy", "weighted_f1", "original_accuracy") if m in rows[0]]
    print(f"\n{title}:")
    print(f"{key:>6}" + "".join(f"{m:>20}" for m in metrics))
    for r in rows:
        print(f"{r[key]:>6}" + "".join(f"{r[m]:>20.4f}" for m in metrics))
    print(f"{'mean':>6}" + "".join(f"{mean_std([r[m] for r in rows]):>20}" for m in metrics))
    summary = {"runs": rows, **{m: {"mean": float(np.mean([r[m] for r in rows])),
                                    "std": float(np.std([r[m] for r in rows], ddof=1)) if len(rows) > 1 else 0.0}
                                for m in metrics}}
    atomic.write_json(path, summary)
    print(f"\nsummary: {path}")
    return 0
