"""Train a Chinese sentiment classifier, report on the test split and export a SavedModel.

    python -m sentiment_tf.train                       # bundled reviews, LSTM, saved_models/lstm/<n>/
    python -m sentiment_tf.train --data my.csv --text-col review --label-col sentiment --epochs 5

    python -m sentiment_tf.train --model bert --pretrained bert-base-chinese   # fine-tune BERT

Steps: load → clean, de-duplicate, split → tokenize (jieba, or the checkpoint's WordPiece) → build →
fit → evaluate → export. Reports, the resolved config, checkpoints and TensorBoard logs go to the run directory.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import (
    CONFIG_CLASSES,
    DataConfig,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    build_configs,
    parse_configs,
    to_dict,
)
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.splits import load_splits
from sentiment_tf.evaluation import report
from sentiment_tf.export import publishing
from sentiment_tf.export import versions as export
from sentiment_tf.models import family, training

log = logging.getLogger("sentiment_tf.train")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("train", __doc__, *CONFIG_CLASSES)


def parse_args(argv: list[str] | None) -> tuple[DataConfig, TokenizerConfig, ModelConfig, TrainConfig, bool]:
    """The configs, and whether ``lowercase`` was chosen (a flag, a config file or the resumed run)."""
    (data_cfg, tok_cfg, model_cfg, train_cfg), ns = parse_configs(build_parser(), argv)
    config_file = getattr(ns, "config", None)
    lowercase_given = "lowercase" in vars(ns) or bool(config_file and "lowercase" in config_lib.load_config_file(config_file))
    if train_cfg.resume:
        # A resumed run must see exactly the data, split and settings it started with.
        values = training.resumed_values(train_cfg.resume, "train")
        if (training.role().local(train_cfg.resume) / "report.json").is_file():
            raise UserError(f"--resume {train_cfg.resume}: that run already finished (report.json exists)")
        data_cfg, tok_cfg, model_cfg, train_cfg = build_configs(values)
        lowercase_given = True
    return data_cfg.resolved(), tok_cfg, model_cfg, family.train_config(train_cfg, model_cfg.model), lowercase_given


def main(argv: list[str] | None = None) -> int:
    data_cfg, tok_cfg, model_cfg, train_cfg, lowercase_given = parse_args(argv)
    setup_logging(train_cfg.verbose)
    training.start_cluster(train_cfg.run_dir, train_cfg.resume)  # TF_CONFIG checked, workers connected
    # Refuse a foreign or unwritable --output or --run-dir before training, not after.
    export.check_base_dir(train_cfg.output)
    export.check_lineage(train_cfg.output, data_cfg.data, None, train_cfg.allow_other_data)
    atomic.check_writable(train_cfg.output, "--output", directory=True)
    atomic.check_writable(train_cfg.run_dir or "runs", "--run-dir", directory=True)
    model_family = family.get(model_cfg.model)  # imports its Keras flavour
    # e.g. checks the checkpoint; a pretrained LSTM brings its tokenizer and shapes
    data_cfg, tok_cfg, model_cfg = model_family.prepare(data_cfg, tok_cfg, model_cfg, lowercase_given)

    # 1. Load, clean, de-duplicate and split (before any tokenization, so nothing leaks).
    splits = load_splits(data_cfg)
    labels = splits.labels.names
    export.check_lineage(train_cfg.output, data_cfg.data, labels, train_cfg.allow_other_data)

    run_dir = (training.role().local(train_cfg.resume) if train_cfg.resume
               else training.new_run_dir(model_cfg.model, train_cfg.run_dir))
    configs = to_dict(data_cfg, tok_cfg, model_cfg, train_cfg)
    atomic.write_json(run_dir / "config.json", configs)
    atomic.write_json(run_dir / "data_stats.json", splits.stats)
    log.info("run directory: %s", run_dir)

    # 2-3. Tokenize, build and fit.
    try:
        trained = model_family.fit(splits, tok_cfg, model_cfg, train_cfg, run_dir, lowercase=data_cfg.lowercase,
                                   seed=data_cfg.seed)
    except KeyboardInterrupt:
        print(f"\ntraining interrupted; continue it with: python -m sentiment_tf.train --resume {run_dir}",
              file=sys.stderr)
        raise

    training.remove_backup(run_dir)

    # 4. Calibrate on validation (one temperature: labels cannot change), evaluate on the test split.
    scored = publishing.score_test(trained, splits.val, splits.test, labels, run_dir, train_cfg.calibration)
    evaluation, extra = scored.evaluation, ({"calibration": scored.calibration_json()} if scored.calibration else {})
    print(f"\nTest set ({evaluation.support} texts):\n{evaluation.text}")
    if scored.calibration:
        print(scored.calibration.summary())
    if data_cfg.domain_col:
        table, extra["by_domain"] = report.by_domain(splits.test["y"], scored.probabilities, splits.test["domain"], labels)
        print(f"By domain ({data_cfg.domain_col}):\n{table}\n")

    # 5. Export a new SavedModel version (verified against the model before it becomes visible), and the reports.
    metrics = publishing.export_metrics(evaluation, run_dir, splits.stats, calibration=extra.get("calibration"),
                                        by_domain=extra.get("by_domain"))
    version_dir = publishing.publish_run(trained, scored, splits.test, training.output_for(train_cfg.output, run_dir),
                                         run_dir, configs, metrics, train_cfg.errors,
                                         extra={"data": splits.stats["split_sizes"], **extra})
    print(f"accuracy {evaluation.accuracy:.4f}  weighted F1 {evaluation.weighted_f1:.4f}")
    if training.finish_worker(run_dir, "the report and the export"):
        return 0
    print(f"report:   {run_dir / 'report.txt'}" + (" (and errors.html)" if train_cfg.errors else ""))
    print(f"exported: {version_dir}")
    print(f'try it:   python -m sentiment_tf.predict --model {train_cfg.output} "这家酒店很干净，服务也好"')
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
