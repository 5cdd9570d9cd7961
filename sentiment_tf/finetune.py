"""Adapt a trained model to a new domain with a few hundred labels, and show what it gained and lost.

    python -m sentiment_tf.finetune --from saved_models/lstm --data hotel.csv --output saved_models/lstm-hotel
    python -m sentiment_tf.finetune --from saved_models/bert --data hotel.csv --freeze embeddings --replay 2000
    python -m sentiment_tf.finetune --from saved_models/lstm --data hotel.csv --learning-curve 0,100,250,500,1000
    python -m sentiment_tf.finetune --from saved_models/lstm --data hotel.csv --cv 5       # or --seeds 5

``--from`` is an export of `python -m sentiment_tf.train` (a version directory or its base
directory); the model keeps its labels, and the domain data must use the same label names.

Steps: load the source model → load, clean, de-duplicate and split the domain data (and re-create
the source model's own test split from its recorded config, to measure forgetting) → score the
source model → adapt (LSTM: grow the vocabulary with domain words; optional freezing; optional replay
of original training data) → score again → print before/after reports → export a new version.

``--learning-curve``, ``--cv`` and ``--seeds`` are evaluation modes: they print and save their
summaries in the run directory and export nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from sentiment_tf import atomic, export, report, training
from sentiment_tf import config as config_lib
from sentiment_tf.config import DataConfig, ModelConfig, TrainConfig, _help, parse_configs, to_dict
from sentiment_tf.data import DOMAIN, LABEL, TEXT, Y, LabelMap, Splits, load_splits
from sentiment_tf.errors import UserError, run_cli, setup_logging

log = logging.getLogger("sentiment_tf.finetune")

# Adaptation starts from a trained model: smaller steps than training from scratch, so the domain
# signal refines the model instead of overwriting it.
FINETUNE_DEFAULTS: dict[str, dict[str, Any]] = {
    "lstm": {"epochs": 10, "batch_size": 32, "learning_rate": 5e-4},
    "bert": {"epochs": 4, "batch_size": 16, "learning_rate": 2e-5},
}


@dataclasses.dataclass
class FinetuneConfig:
    """What to adapt, how, and how to evaluate it."""

    from_model: str = _help("Export to adapt: a version directory or base directory written by `train`.",
                            flags=("--from",), default="")
    output: str | None = _help("Export base directory for the adapted model (default: <from base>-finetuned).",
                               default=None)
    epochs: int | None = _help("Maximum epochs (early stopping on the domain validation split); default 10 for "
                               "lstm, 4 for bert.", at_least=1, default=None)
    batch_size: int | None = _help("Batch size; default 32 for lstm, 16 for bert.", at_least=1, default=None)
    learning_rate: float | None = _help("Peak learning rate; default 5e-4 for lstm, 2e-5 for bert (a quarter "
                                        "to a half of training's).", above=0, default=None)
    patience: int = _help("Early-stopping patience in epochs (domain validation loss).", at_least=0, default=3)
    freeze: Literal["none", "embeddings", "encoder"] = _help(
        "Keep these layers at their source values: 'embeddings' (LSTM: the embedding table, so no vocabulary "
        "growth; BERT: the embedding layer), 'encoder' (everything but the output layer).", default="none")
    freeze_layers: int = _help("BERT only: also freeze the embeddings and the first N encoder layers.", at_least=0, default=0)
    grow_vocab: bool = _help("LSTM only: add domain words missing from the vocabulary as new embedding rows "
                             "(trained rows keep their values).", default=True)
    user_dict: str | None = _help("LSTM only: a jieba user dictionary of domain terms (added to the source "
                                  "model's own; recorded in the export).", default=None)
    min_freq: int = _help("LSTM only: a domain word joins the vocabulary once seen this often in the domain "
                          "training split.", at_least=1, default=2)
    replay: int = _help("Mix this many examples of the source model's original training split into the domain "
                        "training data, to limit forgetting (0 = none).", at_least=0, default=0)
    unlabelled: str | None = _help("Unlabelled domain texts (one per line, or a table with --text-col): after "
                                   "adapting, confident predictions on them become extra training labels and the "
                                   "model is adapted again from the source (self-training).", default=None)
    pseudo_threshold: float = _help("Self-training keeps predictions at least this confident.", at_least=0, at_most=1, default=0.9)
    original_data: str | None = _help("The source model's training data file, if it moved since training "
                                      "(its split is re-created from the recorded seed and sizes).", default=None)
    learning_curve: str | None = _help("Comma-separated numbers of domain training labels, e.g. 0,100,250,500,1000: "
                                       "adapt on each and plot domain accuracy vs a TF-IDF baseline.", default=None)
    cv: int = _help("K-fold cross-validation on the domain data (K ≥ 2): mean ± std accuracy and weighted F1.",
                    at_least=0, default=0)
    seeds: int = _help("Repeat the adaptation with this many seeds and report mean ± std.", at_least=1, default=1)
    run_dir: str | None = _help("Directory for reports, checkpoints and logs (default: runs/finetune-<time>).",
                                default=None)
    verbose: bool = _help("Debug logging.", default=False)

    def __post_init__(self) -> None:
        if not self.from_model:
            raise UserError("--from: give the export to adapt (e.g. saved_models/lstm)")
        if self.cv == 1:
            raise UserError("--cv needs at least 2 folds (0 turns cross-validation off)")
        if sum(bool(x) for x in (self.learning_curve, self.cv, self.seeds > 1)) > 1:
            raise UserError("--learning-curve, --cv and --seeds are separate evaluations; pick one per run")
        if self.unlabelled and not Path(self.unlabelled).is_file():  # now, not after the first adaptation
            raise UserError(f"--unlabelled {self.unlabelled}: file not found")
        self.curve_sizes()  # validates

    def curve_sizes(self) -> list[int]:
        if not self.learning_curve:
            return []
        try:
            sizes = sorted({int(x) for x in self.learning_curve.split(",") if x.strip()})
        except ValueError:
            raise UserError(f"--learning-curve {self.learning_curve!r}: give comma-separated label counts, "
                            "e.g. 0,100,250,500") from None
        if not sizes or sizes[0] < 0:
            raise UserError("--learning-curve counts must be 0 or more")
        return sizes

    def train_config(self, family: str, seed: int) -> TrainConfig:
        defaults = FINETUNE_DEFAULTS[family]
        return TrainConfig(epochs=self.epochs or defaults["epochs"], batch_size=self.batch_size or defaults["batch_size"],
                           learning_rate=self.learning_rate or defaults["learning_rate"], patience=self.patience,
                           warmup_ratio=0.1, output=self.output).resolved_for(family)


# ---------------------------------------------------------------------------------------------
# The source model


@dataclasses.dataclass
class Source:
    version_dir: Path
    metadata: dict
    config: dict  # the training run's resolved config ({"DataConfig": {...}, ...})

    @property
    def family(self) -> str:
        return self.metadata["family"]

    @property
    def labels(self) -> list[str]:
        return list(self.metadata["labels"])

    def load(self) -> Any:
        """A fresh trainable copy (TrainedLSTM or TrainedBert); each adaptation starts from one."""
        return export.load_trained(self.version_dir, self.metadata)

    def model_config(self) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in self.config.get("ModelConfig", {}).items() if k in names})


def load_source(path: str) -> Source:
    import json

    version_dir = export.resolve_version_dir(path)
    metadata = export.read_metadata(version_dir)
    if metadata.get("family") not in ("lstm", "bert"):
        raise UserError(f"--from {path}: unknown model family {metadata.get('family')!r}")
    config_path = version_dir / export.META_DIR / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return Source(version_dir, metadata, config)


def original_splits(source: Source, override: str | None, labels: LabelMap) -> Splits | None:
    """The source model's own train/val/test split, re-created from its recorded data config."""
    saved = dict(source.config.get("DataConfig", {}))
    if not saved:
        return None
    if override:
        saved["data"] = override
    names = {f.name for f in dataclasses.fields(DataConfig)}
    cfg = DataConfig(**{k: v for k, v in saved.items() if k in names and k != "domain_col"})
    try:
        return load_splits(cfg, labels=labels)
    except UserError as err:
        log.warning("cannot re-create the source model's test split (%s); pass --original-data to measure "
                    "forgetting", err)
        return None


def source_overlap(domain: Splits, original: Splits | None) -> dict[str, int] | None:
    """How many domain evaluation texts the source model trained on: its "before" score on those
    measures memory, not the domain (warned about, and recorded in the reports)."""
    if original is None:
        log.warning("cannot check whether the domain test texts were in the source model's training data "
                    "(its data is not found; pass --original-data)")
        return None
    seen = set(original.train[TEXT]) | set(original.val[TEXT])
    counts = {f"domain_{role}_in_source_training": int(frame[TEXT].isin(seen).sum())
              for role, frame in (("test", domain.test), ("val", domain.val), ("train", domain.train))}
    if counts["domain_test_in_source_training"]:
        log.warning("%d of %d domain test texts were in the source model's training data: the 'before' score on "
                    "them measures memory, not the domain; hold out texts the source never saw for a fair "
                    "baseline", counts["domain_test_in_source_training"], len(domain.test))
    return counts


# ---------------------------------------------------------------------------------------------
# Adaptation


def merged_user_dict(source_dict: str | None, domain_dict: str | None, run_dir: Path) -> str | None:
    if not domain_dict:
        return source_dict
    if not Path(domain_dict).is_file():
        raise UserError(f"--user-dict {domain_dict}: file not found")
    parts = [Path(p).read_text(encoding="utf-8").strip() for p in (source_dict, domain_dict) if p]
    path = run_dir / "user_dict.txt"
    atomic.write_text(path, "\n".join(parts) + "\n")
    return str(path)


def adapt(source: Source, train: pd.DataFrame, val: pd.DataFrame, cfg: FinetuneConfig, run_dir: Path,
          seed: int) -> Any:
    """Continues training a fresh copy of the source model on ``train`` (early stopping on ``val``)."""
    trained = source.load()
    labels = LabelMap(source.labels)
    splits = Splits(train.reset_index(drop=True), val.reset_index(drop=True), val.head(0), labels, {})
    train_cfg = cfg.train_config(source.family, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    if source.family == "lstm":
        return _adapt_lstm(trained, source, splits, cfg, train_cfg, run_dir, seed)
    return _adapt_bert(trained, source, splits, cfg, train_cfg, run_dir, seed)


def _adapt_lstm(trained: Any, source: Source, splits: Splits, cfg: FinetuneConfig, train_cfg: TrainConfig,
                run_dir: Path, seed: int) -> Any:
    from sentiment_tf.models import lstm
    from sentiment_tf.text import Tokenizer, build_vocabulary

    old = trained.tokenizer
    tokenizer = old
    if cfg.user_dict:
        tokenizer = Tokenizer(mode=old.mode, hmm=old.hmm, lowercase=old.lowercase,
                              user_dict=merged_user_dict(old.user_dict, cfg.user_dict, run_dir),
                              stopwords=old.stopwords_path)
    segmented = {name: tokenizer.segment(frame[TEXT], cleaned=True) for name, frame in
                 (("train", splits.train), ("val", splits.val))}
    vocabulary, model = list(trained.vocabulary), trained.model
    model_cfg = source.model_config()
    if cfg.grow_vocab and cfg.freeze == "none":
        known = set(vocabulary)
        new = [t for t in build_vocabulary(segmented["train"], cfg.min_freq, 10**9) if t not in known]
        if new:
            log.info("vocabulary grows by %d domain words (e.g. %s)", len(new), " ".join(new[:8]))
            model = lstm.grow_vocabulary(model, model_cfg, len(vocabulary) + 2, len(new))
            vocabulary += new
    if cfg.freeze in ("embeddings", "encoder"):
        model.get_layer("embedding").trainable = False
    if cfg.freeze == "encoder":
        for layer in model.layers:
            if layer.name != "probabilities":
                layer.trainable = False
    from sentiment_tf.config import TokenizerConfig

    tok_cfg = TokenizerConfig(max_tokens=trained.max_tokens)
    model, lookup, history = lstm.fit(splits, segmented, vocabulary, tok_cfg, model_cfg, train_cfg, run_dir,
                                      seed=seed, model=model)
    return lstm.TrainedLSTM(model, lookup, vocabulary, tokenizer, source.labels, trained.max_tokens, history)


def _adapt_bert(trained: Any, source: Source, splits: Splits, cfg: FinetuneConfig, train_cfg: TrainConfig,
                run_dir: Path, seed: int) -> Any:
    from sentiment_tf.models import bert

    def freeze(model: Any) -> None:
        if cfg.freeze == "encoder":
            model.bert.trainable = False
        elif cfg.freeze == "embeddings" or cfg.freeze_layers:
            model.bert.embeddings.trainable = False
        layers = model.bert.encoder.layer
        if cfg.freeze_layers > len(layers):
            raise UserError(f"--freeze-layers {cfg.freeze_layers}: the model has only {len(layers)} layers")
        for layer in layers[: cfg.freeze_layers]:
            layer.trainable = False

    model_cfg = dataclasses.replace(source.model_config(), model="bert", max_length=trained.max_length)
    return bert.fit(splits, model_cfg, train_cfg, run_dir, lowercase=trained.lowercase, seed=seed,
                    initial=(trained.model, trained.tokenizer), freeze=freeze)


def replay_sample(original: Splits, n: int, exclude: set[str], seed: int) -> pd.DataFrame:
    """``n`` stratified examples of the original training split, none of them in ``exclude``."""
    pool = original.train[~original.train[TEXT].isin(exclude)]
    if n >= len(pool):
        return pool
    from sklearn.model_selection import train_test_split

    sample, _ = train_test_split(pool, train_size=n, random_state=seed, stratify=pool[LABEL])
    return sample


def pseudo_labels(model: Any, cfg: FinetuneConfig, labels: LabelMap, exclude: set[str], lowercase: bool,
                  text_col: str) -> pd.DataFrame:
    """Confident predictions of ``model`` on ``--unlabelled`` texts, balanced across labels.

    Balanced (the same number per label, the most confident first) because a model that leans to one
    label is also more often confident about it, and training on that skew would deepen it.
    """
    from sentiment_tf.data import read_texts
    from sentiment_tf.text import clean_text

    raw = read_texts([cfg.unlabelled], text_col, "--unlabelled")
    texts = list(dict.fromkeys(t for t in (clean_text(x, lowercase) for x in raw) if t and t not in exclude))
    if not texts:
        log.warning("self-training: no usable unlabelled texts in %s", cfg.unlabelled)
        return pd.DataFrame(columns=[TEXT, LABEL, Y])
    probs = model.predict_proba(texts)
    frame = pd.DataFrame({TEXT: texts, Y: probs.argmax(-1), "p": probs.max(-1)})
    frame = frame[frame["p"] >= cfg.pseudo_threshold]
    per_label = frame.groupby(Y).size().reindex(range(len(labels.names)), fill_value=0)
    k = int(per_label.min())
    frame = frame.sort_values("p", ascending=False).groupby(Y, group_keys=False).head(k)
    frame[LABEL] = [labels.names[i] for i in frame[Y]]
    log.info("self-training: %d of %d unlabelled texts predicted with p ≥ %.2f; %d per label kept", int(per_label.sum()),
             len(texts), cfg.pseudo_threshold, k)
    return frame[[TEXT, LABEL, Y]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Evaluation


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


# ---------------------------------------------------------------------------------------------
# Main


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("finetune", __doc__, DataConfig, FinetuneConfig)


def adapt_with_extras(source: Source, domain: Splits, original: Splits | None, cfg: FinetuneConfig,
                      data_cfg: DataConfig, labels: LabelMap, run_dir: Path) -> tuple[Any, pd.DataFrame | None]:
    """The adapted model, trained on the domain split plus replayed original examples (``--replay``),
    then again with pseudo-labelled ``--unlabelled`` texts; and those pseudo-labels (or None)."""
    train = domain.train
    if cfg.replay:
        exclude = set(domain.val[TEXT]) | set(domain.test[TEXT])
        extra = replay_sample(original, cfg.replay, exclude, data_cfg.seed)
        log.info("replay: %d original training examples mixed into %d domain examples", len(extra), len(train))
        train = pd.concat([train, extra[train.columns.intersection(extra.columns)]], ignore_index=True)
    adapted = adapt(source, train, domain.val, cfg, run_dir, data_cfg.seed)
    pseudo = None
    if cfg.unlabelled:
        exclude = set(domain.train[TEXT]) | set(domain.val[TEXT]) | set(domain.test[TEXT])
        if original is not None:
            exclude |= set(original.test[TEXT])
        pseudo = pseudo_labels(adapted, cfg, labels, exclude, data_cfg.lowercase, data_cfg.text_col)
        if len(pseudo):
            adapted = adapt(source, pd.concat([train, pseudo], ignore_index=True), domain.val, cfg,
                            run_dir / "self_training", data_cfg.seed)
    return adapted, pseudo


def print_summary(source: Source, domain: Splits, data_cfg: DataConfig, cfg: FinetuneConfig, before: dict,
                  after: dict, adapted: Any, pseudo: pd.DataFrame | None, labels: LabelMap) -> dict[str, Any]:
    """Prints the before/after reports on each test split (and per domain) and returns them as JSON."""
    summary: dict[str, Any] = {"source": str(source.version_dir), "family": source.family,
                               "domain_train": len(domain.train), "replay": cfg.replay,
                               "pseudo_labels": 0 if pseudo is None else len(pseudo), "results": {}}
    for split_name in before:
        b, a = before[split_name], after[split_name]
        title = "domain test split" if split_name == "domain" else "original test split (forgetting)"
        print(f"\n=== {title}: {a.support} texts ===\n--- before (source model) ---\n{b.text}"
              f"--- after (adapted) ---\n{a.text}")
        summary["results"][split_name] = {"before": b.to_json(), "after": a.to_json(),
                                          "accuracy_change": a.accuracy - b.accuracy}
    if data_cfg.domain_col:
        table, summary["by_domain"] = report.by_domain(domain.test[Y], adapted.predict_proba(domain.test[TEXT].tolist()),
                                                       domain.test[DOMAIN], labels.names)
        print(f"By domain ({data_cfg.domain_col}), adapted model:\n{table}\n")
    print(f"{'test split':<34}{'before':>9}{'after':>9}{'change':>9}")
    for split_name, r in summary["results"].items():
        print(f"{split_name + ' accuracy':<34}{r['before']['accuracy']:>9.4f}{r['after']['accuracy']:>9.4f}"
              f"{100 * r['accuracy_change']:>+8.2f}p")
    return summary


def main(argv: list[str] | None = None) -> int:
    (data_cfg, cfg), _ = parse_configs(build_parser(), argv, (DataConfig, FinetuneConfig))
    setup_logging(cfg.verbose)
    source = load_source(cfg.from_model)
    labels = LabelMap(source.labels)
    output = cfg.output or f"{source.version_dir.parent}-finetuned"
    cfg = dataclasses.replace(cfg, output=output)
    export.check_base_dir(output)
    atomic.check_writable(output, "--output", directory=True)
    atomic.check_writable(cfg.run_dir or "runs", "--run-dir", directory=True)

    # 1. Domain data, split after cleaning and de-duplication; labels must be the model's. Cleaning
    #    follows the source model (its tokenizer saw text cleaned that way).
    lowercase = bool(source.config.get("DataConfig", {}).get("lowercase", data_cfg.lowercase))
    data_cfg = dataclasses.replace(data_cfg, lowercase=lowercase)
    domain = load_splits(data_cfg, labels=labels)
    original = original_splits(source, cfg.original_data, labels)
    if cfg.replay and original is None:
        raise UserError("--replay needs the source model's training data; pass --original-data FILE")
    if original is not None:
        # The original test split must not teach the adapted model; drop its texts from domain training.
        domain.train = domain.train[~domain.train[TEXT].isin(set(original.test[TEXT]))].reset_index(drop=True)

    overlap = source_overlap(domain, original)

    run_dir = training.new_run_dir("finetune", cfg.run_dir)
    atomic.write_json(run_dir / "config.json", {**to_dict(data_cfg, cfg), "source": str(source.version_dir)})
    atomic.write_json(run_dir / "data_stats.json", {**domain.stats, "source_overlap": overlap})
    log.info("run directory: %s; adapting %s model %s", run_dir, source.family, source.version_dir)

    if cfg.learning_curve:
        return learning_curve(source, domain, original, cfg, run_dir)
    if cfg.cv:
        return cross_validate(source, domain, data_cfg, cfg, run_dir)
    if cfg.seeds > 1:
        return repeat_seeds(source, domain, original, cfg, data_cfg.seed, run_dir)

    # 2. Before: the source model as it is.
    before_model = source.load()
    before = {"domain": score(before_model, domain.test, labels.names)}
    if original is not None:
        before["original"] = score(before_model, original.test, labels.names)
    del before_model

    # 3. Adapt (with replay of original training data and self-training if asked).
    adapted, pseudo = adapt_with_extras(source, domain, original, cfg, data_cfg, labels, run_dir)
    after = {"domain": score(adapted, domain.test, labels.names)}
    if original is not None:
        after["original"] = score(adapted, original.test, labels.names)

    # 4. Reports: before/after on both test sets, per domain when asked.
    summary = print_summary(source, domain, data_cfg, cfg, before, after, adapted, pseudo, labels)
    summary["source_overlap"] = overlap

    # 5. Export the adapted model as a new version.
    configs = {**source.config, "FinetuneConfig": dataclasses.asdict(cfg), "DataConfig": dataclasses.asdict(data_cfg)}
    metrics = {"test_accuracy": after["domain"].accuracy, "test_weighted_f1": after["domain"].weighted_f1,
               "test_size": after["domain"].support, "run_dir": str(run_dir), "finetuned_from": str(source.version_dir)}
    if original is not None:
        metrics["original_test_accuracy"] = after["original"].accuracy
    version_dir = export.publish(adapted, output, configs, metrics, domain.test[TEXT].tolist(), run_dir)
    summary["export"] = str(version_dir)
    atomic.write_json(run_dir / "finetune_report.json", summary)
    report.write_reports(run_dir, after["domain"], adapted.history, extra={"export": str(version_dir)})
    print(f"\nreport:   {run_dir / 'finetune_report.json'}\nexported: {version_dir}")
    return 0


def _curve_subsets(train: pd.DataFrame, sizes: list[int], seed: int) -> dict[int, pd.DataFrame]:
    """Nested subsets (each contains the smaller ones) in a seeded order with labels interleaved, so
    even a small subset holds every label."""
    rng = np.random.default_rng(seed)
    shuffled = train.iloc[rng.permutation(len(train))]
    interleaved = shuffled.assign(_rank=shuffled.groupby(LABEL).cumcount()).sort_values("_rank", kind="stable")
    interleaved = interleaved.drop(columns="_rank")
    return {n: interleaved.head(n) for n in sizes}


def learning_curve(source: Source, domain: Splits, original: Splits | None, cfg: FinetuneConfig, run_dir: Path) -> int:
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
            adapted = adapt(source, subset, domain.val, cfg, run_dir / f"n{n}", 0)
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


def cross_validate(source: Source, domain: Splits, data_cfg: DataConfig, cfg: FinetuneConfig, run_dir: Path) -> int:
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
        ev = score(adapt(source, train, val, cfg, run_dir / f"fold{k}", data_cfg.seed), test, source.labels)
        rows.append({"fold": k, "accuracy": ev.accuracy, "weighted_f1": ev.weighted_f1, "test_size": ev.support})
        log.info("fold %d/%d: accuracy %.4f, weighted F1 %.4f", k, cfg.cv, ev.accuracy, ev.weighted_f1)
    return _print_repeats(f"{cfg.cv}-fold cross-validation", "fold", rows, run_dir / "cv.json")


def repeat_seeds(source: Source, domain: Splits, original: Splits | None, cfg: FinetuneConfig, seed: int,
                 run_dir: Path) -> int:
    rows = []
    for s in range(seed, seed + cfg.seeds):
        adapted = adapt(source, domain.train, domain.val, cfg, run_dir / f"seed{s}", s)
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


def cli() -> None:
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
