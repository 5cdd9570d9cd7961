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
from typing import Any

import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import (
    AdaptConfig,
    DataConfig,
    TrainConfig,
    parse_configs,
    to_dict,
)
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.splits import DOMAIN, TEXT, LabelMap, Splits, Y, load_splits
from sentiment_tf.evaluation import report
from sentiment_tf.export import publishing
from sentiment_tf.export import versions as export
from sentiment_tf.models import experiments, family, training
from sentiment_tf.models.adaptation import (
    Source,
    adapt_with_extras,
    load_source,
    original_splits,
    source_overlap,
)
from sentiment_tf.models.distillation import Teacher
from sentiment_tf.models.experiments import score

log = logging.getLogger("sentiment_tf.finetune")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("finetune", __doc__, DataConfig, AdaptConfig, TrainConfig)


def parse_args(argv: list[str] | None) -> tuple[DataConfig, AdaptConfig, TrainConfig, Source]:
    """The configs (training settings resolved with the source family's adaptation recipe) and the source."""
    (data_cfg, cfg, train_cfg), _ = parse_configs(build_parser(), argv, (DataConfig, AdaptConfig, TrainConfig))
    if train_cfg.resume:
        raise UserError("--resume: finetune runs are not resumed; run the adaptation again (it is short)")
    training.start_cluster(train_cfg.run_dir, None)  # TF_CONFIG checked, before any TensorFlow op
    source = load_source(cfg.from_model)
    train_cfg = family.train_config(train_cfg, source.family, "finetune", output=f"{source.version_dir.parent}-finetuned")
    if cfg.teacher:
        if not family.recipe(source.family).student:
            raise UserError(f"--teacher: a {source.family} model cannot learn a teacher's soft targets; distil into "
                            "an LSTM (--from an LSTM export)")
        if train_cfg.class_weight == "balanced":
            raise UserError("--class-weight balanced cannot weigh a teacher's soft targets; leave it out with --teacher")
        Teacher(cfg.teacher, list(source.labels))  # exists, and has the model's labels: checked before any work
    # Cleaning follows the source model: its tokenizer saw text cleaned that way.
    lowercase = bool(source.config.get("DataConfig", {}).get("lowercase", data_cfg.lowercase))
    return dataclasses.replace(data_cfg, lowercase=lowercase), cfg, train_cfg, source


def print_summary(source: Source, domain: Splits, data_cfg: DataConfig, cfg: AdaptConfig, before: dict,
                  after: dict, test_probs: Any, pseudo: pd.DataFrame | None, labels: LabelMap) -> dict[str, Any]:
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
        table, summary["by_domain"] = report.by_domain(domain.test[Y], test_probs, domain.test[DOMAIN], labels.names)
        print(f"By domain ({data_cfg.domain_col}), adapted model:\n{table}\n")
    print(f"{'test split':<34}{'before':>9}{'after':>9}{'change':>9}")
    for split_name, r in summary["results"].items():
        print(f"{split_name + ' accuracy':<34}{r['before']['accuracy']:>9.4f}{r['after']['accuracy']:>9.4f}"
              f"{100 * r['accuracy_change']:>+8.2f}p")
    return summary


def export_metrics(after: dict, summary: dict[str, Any], domain: Splits, source: Source, run_dir: Any) -> dict[str, Any]:
    """What the export's metadata and model card record of the adapted model."""
    metrics = publishing.export_metrics(after["domain"], run_dir, domain.stats, finetuned_from=str(source.version_dir),
                                        calibration=summary["calibration"], by_domain=summary.get("by_domain"),
                                        distillation=summary.get("distillation"))
    if "original" in after:
        metrics["original_test_accuracy"] = after["original"].accuracy
    return metrics


def load_data(data_cfg: DataConfig, cfg: AdaptConfig, source: Source,
              labels: LabelMap) -> tuple[Splits, Splits | None, AdaptConfig]:
    """The domain's splits, the source model's own (or None when its data is not found), and ``cfg``
    with the replay count resolved. Texts of the original test split leave domain training."""
    domain = load_splits(data_cfg, labels=labels)
    original = original_splits(source, cfg.original_data, labels)
    if cfg.replay is None:
        replay = family.recipe(source.family).replay
        if replay and original is None:
            log.warning("replay off: the source model's training data is not found; pass --original-data FILE to "
                        "replay %d of its examples and limit forgetting", replay)
            replay = 0
        cfg = dataclasses.replace(cfg, replay=replay)  # recorded concretely
    elif cfg.replay and original is None:
        raise UserError("--replay needs the source model's training data; pass --original-data FILE")
    if original is not None:
        # The original test split must not teach the adapted model.
        domain.train = domain.train[~domain.train[TEXT].isin(set(original.test[TEXT]))].reset_index(drop=True)
    return domain, original, cfg


def main(argv: list[str] | None = None) -> int:
    data_cfg, cfg, train_cfg, source = parse_args(argv)
    setup_logging(train_cfg.verbose)
    labels = LabelMap(source.labels)
    export.check_base_dir(train_cfg.output)
    if not (cfg.learning_curve or cfg.cv or cfg.seeds > 1):  # the evaluation modes export nothing
        export.check_lineage(train_cfg.output, data_cfg.data, source.labels, train_cfg.allow_other_data)
    atomic.check_writable(train_cfg.output, "--output", directory=True)
    atomic.check_writable(train_cfg.run_dir or "runs", "--run-dir", directory=True)

    # 1. Domain data, split after cleaning and de-duplication; labels must be the model's. The source
    #    model's own split is re-created from its recorded config, to measure forgetting.
    domain, original, cfg = load_data(data_cfg, cfg, source, labels)
    overlap = source_overlap(domain, original)

    run_dir = training.new_run_dir("finetune", train_cfg.run_dir)
    atomic.write_json(run_dir / "config.json", {**to_dict(data_cfg, cfg, train_cfg), "source": str(source.version_dir)})
    atomic.write_json(run_dir / "data_stats.json", {**domain.stats, "source_overlap": overlap})
    log.info("run directory: %s; adapting %s model %s", run_dir, source.family, source.version_dir)

    code = None
    if cfg.learning_curve:
        code = experiments.learning_curve(source, domain, original, cfg, train_cfg, run_dir)
    elif cfg.cv:
        code = experiments.cross_validate(source, domain, data_cfg, cfg, train_cfg, run_dir)
    elif cfg.seeds > 1:
        code = experiments.repeat_seeds(source, domain, original, cfg, train_cfg, data_cfg.seed, run_dir)
    if code is not None:
        training.finish_worker(run_dir, "the reports")
        return code

    # 2. Before: the source model as it is.
    before_model = source.load()
    before = {"domain": score(before_model, domain.test, labels.names)}
    if original is not None:
        before["original"] = score(before_model, original.test, labels.names)
    del before_model

    # 3. Adapt (with replay of original training data and self-training if asked).
    result = adapt_with_extras(source, domain, original, cfg, train_cfg, data_cfg, run_dir)
    adapted, pseudo = result.model, result.pseudo
    # a new temperature for the adapted model, on the domain's validation split
    scored = publishing.score_test(adapted, domain.val, domain.test, labels.names, run_dir, train_cfg.calibration)
    after = {"domain": scored.evaluation}
    if original is not None:
        after["original"] = score(adapted, original.test, labels.names)

    # 4. Reports: before/after on both test sets, per domain when asked.
    summary = print_summary(source, domain, data_cfg, cfg, before, after, scored.probabilities, pseudo, labels)
    summary["source_overlap"] = overlap
    summary["calibration"] = scored.calibration_json()
    if result.distillation:
        summary["distillation"] = result.distillation
        print(f"teacher {result.distillation['test_accuracy']:.4f} accuracy on the domain test split; the adapted "
              f"model agrees with it on {result.distillation['student_agreement']:.1%}")
    if scored.calibration:
        print(scored.calibration.summary())

    # 5. Export the adapted model as a new version.
    configs = {**source.config, **to_dict(data_cfg, cfg, train_cfg)}
    metrics = export_metrics(after, summary, domain, source, run_dir)
    version_dir = publishing.publish_run(adapted, scored, domain.test, training.output_for(train_cfg.output, run_dir),
                                         run_dir, configs, metrics, train_cfg.errors)
    summary["export"] = str(version_dir)
    atomic.write_json(run_dir / "finetune_report.json", summary)
    if training.finish_worker(run_dir, "the report and the export"):
        return 0
    print(f"\nreport:   {run_dir / 'finetune_report.json'}\nexported: {version_dir}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
