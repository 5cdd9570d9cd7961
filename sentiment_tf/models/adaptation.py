"""Adapting a trained model to a domain: the source model and its own data, replay of that data,
self-training on unlabelled domain text, and the adaptation itself (each family adapts its own way:
``Family.adapt``)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd

from sentiment_tf.core.config import AdaptConfig, DataConfig, ModelConfig, TrainConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.data.splits import (
    LABEL,
    TEXT,
    LabelMap,
    Splits,
    Y,
    load_splits,
    read_texts,
)
from sentiment_tf.export import versions as export
from sentiment_tf.models import family
from sentiment_tf.models.distillation import SoftTargets, Teacher, soften, transfer_texts, with_transfer
from sentiment_tf.models.family import Trained

log = logging.getLogger("sentiment_tf.models.adaptation")


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

    def load(self) -> Trained:
        """A fresh trainable copy; each adaptation starts from one."""
        return family.get(self.family).load(self.version_dir, self.metadata)

    def model_config(self) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in self.config.get("ModelConfig", {}).items() if k in names})


def load_source(path: str) -> Source:
    version_dir = export.resolve_version_dir(path)
    metadata = export.read_metadata(version_dir)
    if metadata.get("family") not in family.names():
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


def adapt(source: Source, train: pd.DataFrame, val: pd.DataFrame, cfg: AdaptConfig, train_cfg: TrainConfig,
          run_dir: Path, seed: int, soft: SoftTargets | None = None) -> Trained:
    """Continues training a fresh copy of the source model on ``train`` (early stopping on ``val``); with
    ``soft``, on a teacher's soft targets too (rows with ``y = -1`` learn from the teacher only)."""
    splits = Splits(train.reset_index(drop=True), val.reset_index(drop=True), val.head(0), LabelMap(source.labels), {})
    run_dir.mkdir(parents=True, exist_ok=True)
    return family.get(source.family).adapt(source.load(), splits, cfg, source.model_config(), train_cfg, run_dir, seed,
                                           **({"soft": soft} if soft is not None else {}))


@dataclasses.dataclass
class Adapted:
    model: Trained
    pseudo: pd.DataFrame | None = None  # self-training's labels
    distillation: dict | None = None  # the teacher, its domain test accuracy and the student's agreement


def distilled(source: Source, domain: Splits, original: Splits | None, train: pd.DataFrame, cfg: AdaptConfig,
              train_cfg: TrainConfig, data_cfg: DataConfig, run_dir: Path) -> "Adapted":
    """The source model adapted on ``train`` (domain labels and replay) plus ``--unlabelled`` domain texts,
    learning ``--teacher``'s soft targets for all of them and the labels where there are some."""
    teacher = Teacher(cfg.teacher, list(source.labels))
    raw = read_texts([cfg.unlabelled], data_cfg.text_col, "--unlabelled") if cfg.unlabelled else []
    held_out = domain if original is None else dataclasses.replace(
        domain, test=pd.concat([domain.test, original.test], ignore_index=True))
    transfer = transfer_texts(raw, dataclasses.replace(held_out, train=train), data_cfg.lowercase)
    frame = with_transfer(dataclasses.replace(domain, train=train.reset_index(drop=True)), transfer).train
    log.info("distilling from %s: %d labelled + %d unlabelled texts", teacher.version_dir, len(train), len(transfer))
    cache = run_dir.parent / "teacher-cache"
    scores = {name: teacher.probabilities(texts, cache) for name, texts in (
        ("train", frame[TEXT].tolist()), ("val", domain.val[TEXT].tolist()), ("test", domain.test[TEXT].tolist()))}
    soft = SoftTargets(soften(scores["train"], cfg.temperature), soften(scores["val"], cfg.temperature),
                       cfg.temperature, cfg.alpha)
    adapted = adapt(source, frame, domain.val, cfg, train_cfg, run_dir, data_cfg.seed, soft=soft)
    agreement = float((scores["test"].argmax(1) == adapted.predict_proba(domain.test[TEXT].tolist()).argmax(1)).mean())
    return Adapted(adapted, None, {
        **teacher.describe(), "temperature": cfg.temperature, "alpha": cfg.alpha,
        "test_accuracy": float((scores["test"].argmax(1) == domain.test[Y].to_numpy()).mean()),
        "student_agreement": agreement, "transfer_labelled": len(train), "transfer_unlabelled": len(transfer)})


def replay_sample(original: Splits, n: int, exclude: set[str], seed: int) -> pd.DataFrame:
    """``n`` stratified examples of the original training split, none of them in ``exclude``."""
    pool = original.train[~original.train[TEXT].isin(exclude)]
    if n >= len(pool):
        return pool
    from sklearn.model_selection import train_test_split

    sample, _ = train_test_split(pool, train_size=n, random_state=seed, stratify=pool[LABEL])
    return sample


def pseudo_labels(model: Trained, cfg: AdaptConfig, labels: LabelMap, exclude: set[str], lowercase: bool,
                  text_col: str) -> pd.DataFrame:
    """Confident predictions of ``model`` on ``--unlabelled`` texts, balanced across labels.

    Balanced (the same number per label, the most confident first) because a model that leans to one
    label is also more often confident about it, and training on that skew would deepen it.
    """
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


def adapt_with_extras(source: Source, domain: Splits, original: Splits | None, cfg: AdaptConfig,
                      train_cfg: TrainConfig, data_cfg: DataConfig, run_dir: Path) -> Adapted:
    """The adapted model, trained on the domain split plus replayed original examples (``--replay``),
    then again with pseudo-labelled ``--unlabelled`` texts (with the pseudo-labels); or, with ``--teacher``,
    distilled over the same texts."""
    train = domain.train
    if cfg.replay:
        exclude = set(domain.val[TEXT]) | set(domain.test[TEXT])
        extra = replay_sample(original, cfg.replay, exclude, data_cfg.seed)
        log.info("replay: %d original training examples mixed into %d domain examples", len(extra), len(train))
        train = pd.concat([train, extra[train.columns.intersection(extra.columns)]], ignore_index=True)
    if cfg.teacher:
        return distilled(source, domain, original, train, cfg, train_cfg, data_cfg, run_dir)
    adapted = adapt(source, train, domain.val, cfg, train_cfg, run_dir, data_cfg.seed)
    pseudo = None
    if cfg.unlabelled:
        exclude = set(domain.train[TEXT]) | set(domain.val[TEXT]) | set(domain.test[TEXT])
        if original is not None:
            exclude |= set(original.test[TEXT])
        pseudo = pseudo_labels(adapted, cfg, LabelMap(source.labels), exclude, data_cfg.lowercase, data_cfg.text_col)
        if len(pseudo):
            adapted = adapt(source, pd.concat([train, pseudo], ignore_index=True), domain.val, cfg, train_cfg,
                            run_dir / "self_training", data_cfg.seed)
    return Adapted(adapted, pseudo)


