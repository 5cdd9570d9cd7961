"""Distil a teacher export (usually a fine-tuned BERT) into an LSTM: the teacher's accuracy at the LSTM's cost.

    python -m sentiment_tf.distill --teacher saved_models/bert --data reviews.csv --unlabelled pool.csv
    python -m sentiment_tf.distill --teacher saved_models/bert-hotel --data hotel.csv --unlabelled hotel_pool.txt \\
        --pretrained lm/ --temperature 2 --alpha 0.7 --output saved_models/lstm-hotel

The teacher scores a transfer set — the labelled training texts, the unlabelled texts and `--augment`
rewritten copies of the labelled texts (cleaned, de-duplicated, none of the validation or test texts) —
once, in batches, cached under the run directory's parent so an interrupted run continues without
scoring again. The student (the LSTM with
any `train` option, `--pretrained` LM included) learns from the teacher's probabilities at
`--temperature` and, for labelled texts, from the label (Hinton et al. 2015; Tang et al. 2019).
Early stopping, calibration, the report, the export and the model card are `train`'s; the card names
the teacher, its accuracy on this test split and how often the student agrees with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import (
    CONFIG_CLASSES,
    DataConfig,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    option,
    parse_configs,
    to_dict,
)
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.augmentation import augment
from sentiment_tf.data.splits import TEXT, Y, load_splits, read_texts
from sentiment_tf.export import publishing
from sentiment_tf.export import versions as export
from sentiment_tf.models import family, training
from sentiment_tf.models.distillation import SoftTargets, Teacher, soften, transfer_texts, with_transfer

log = logging.getLogger("sentiment_tf.distill")


@dataclasses.dataclass
class DistillConfig:
    """The teacher, the transfer set and the distillation loss."""

    teacher: str = option("The teacher: an export (version or base directory) trained on the same labels.", default="")
    unlabelled: list[str] = option("Unlabelled texts for the transfer set (one per line, or a table with --text-col); "
                                   "repeat for several files.", default_factory=list)
    temperature: float = option("Softmax temperature of the teacher's and the student's distributions in the soft "
                                "loss (higher: more of the teacher's view of the wrong labels).", above=0, default=2.0)
    alpha: float = option("Weight of the teacher's soft targets for a labelled text; the label gets 1 - alpha "
                          "(texts without a label learn from the teacher only).", at_least=0, at_most=1, default=0.5)
    augment: int = option("Augmented copies of each labelled training text in the transfer set (word masking, "
                          "same-POS swap, n-gram sampling; the teacher labels them).", at_least=0, default=0)
    teacher_batch: int = option("Texts per teacher call while scoring.", at_least=1, default=64)

    def __post_init__(self) -> None:
        if not self.teacher:
            raise UserError("--teacher: give the export to distil from (e.g. saved_models/bert)")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("distill", __doc__, DistillConfig, *CONFIG_CLASSES)


def parse_args(argv: list[str] | None) -> tuple[DistillConfig, DataConfig, TokenizerConfig, ModelConfig, TrainConfig]:
    (cfg, data_cfg, tok_cfg, model_cfg, train_cfg), ns = parse_configs(build_parser(), argv,
                                                                      (DistillConfig, *CONFIG_CLASSES))
    if train_cfg.resume:
        raise UserError("--resume: distill runs are not resumed; run it again with the same --run-dir parent "
                        "(the teacher's scores are cached and not computed again)")
    if train_cfg.class_weight == "balanced":
        raise UserError("--class-weight balanced cannot weigh a teacher's soft targets; leave it out when distilling")
    if not family.recipe(model_cfg.model).student:
        raise UserError(f"--model {model_cfg.model}: only an LSTM student can be distilled into; use --model lstm")
    lowercase_given = "lowercase" in vars(ns)
    return cfg, data_cfg.resolved(), tok_cfg, model_cfg, family.train_config(train_cfg, model_cfg.model), \
        lowercase_given


def main(argv: list[str] | None = None) -> int:
    cfg, data_cfg, tok_cfg, model_cfg, train_cfg, lowercase_given = parse_args(argv)
    setup_logging(train_cfg.verbose)
    export.check_base_dir(train_cfg.output)
    export.check_lineage(train_cfg.output, data_cfg.data, None, train_cfg.allow_other_data)
    atomic.check_writable(train_cfg.output, "--output", directory=True)
    atomic.check_writable(train_cfg.run_dir or "runs", "--run-dir", directory=True)
    raw_unlabelled = read_texts(cfg.unlabelled, data_cfg.text_col, "--unlabelled") if cfg.unlabelled else []
    student = family.get(model_cfg.model)
    data_cfg, tok_cfg, model_cfg = student.prepare(data_cfg, tok_cfg, model_cfg, lowercase_given)

    # 1. The labelled data, split as `train` splits it; the teacher on the same labels.
    splits = load_splits(data_cfg)
    labels = splits.labels.names
    export.check_lineage(train_cfg.output, data_cfg.data, labels, train_cfg.allow_other_data)
    teacher = Teacher(cfg.teacher, labels)
    transfer = transfer_texts(raw_unlabelled, splits, data_cfg.lowercase)
    augmented = transfer_texts(augment(splits.train[TEXT].tolist(), cfg.augment, data_cfg.seed), splits,
                               data_cfg.lowercase, exclude=transfer)
    student_splits = with_transfer(splits, transfer + augmented)
    log.info("transfer set: %d labelled + %d unlabelled + %d augmented texts", len(splits.train), len(transfer),
             len(augmented))

    run_dir = training.new_run_dir(f"distill-{model_cfg.model}", train_cfg.run_dir)
    configs = {**to_dict(data_cfg, tok_cfg, model_cfg, train_cfg), "DistillConfig": dataclasses.asdict(cfg)}
    atomic.write_json(run_dir / "config.json", configs)
    atomic.write_json(run_dir / "data_stats.json", {**splits.stats, "transfer_unlabelled": len(transfer),
                                                     "transfer_augmented": len(augmented)})
    log.info("run directory: %s", run_dir)

    # 2. The teacher scores the transfer set, validation and test (cached beside the run directories).
    cache = run_dir.parent / "teacher-cache"
    # The augmented copies apart: the scores of the rest stay cached whatever --augment is.
    labelled_and_pool = splits.train[TEXT].tolist() + transfer
    scores = {name: teacher.probabilities(texts, cache, cfg.teacher_batch) for name, texts in (
        ("train", labelled_and_pool), ("augmented", augmented), ("val", splits.val[TEXT].tolist()),
        ("test", splits.test[TEXT].tolist()))}
    scores["train"] = np.concatenate([scores["train"], scores.pop("augmented")])
    soft = SoftTargets(soften(scores["train"], cfg.temperature), soften(scores["val"], cfg.temperature),
                       cfg.temperature, cfg.alpha)

    # 3. The student learns from the teacher and the labels.
    trained = student.fit(student_splits, tok_cfg, model_cfg, train_cfg, run_dir, lowercase=data_cfg.lowercase,
                          seed=data_cfg.seed, soft=soft)
    training.remove_backup(run_dir)

    # 4. Calibrate, evaluate, compare with the teacher on the same test split, export.
    scored = publishing.score_test(trained, splits.val, splits.test, labels, run_dir, train_cfg.calibration)
    evaluation = scored.evaluation
    y_test = splits.test[Y].to_numpy()
    teacher_accuracy = float((scores["test"].argmax(1) == y_test).mean())
    agreement = float((scores["test"].argmax(1) == scored.probabilities.argmax(1)).mean())
    distillation = {**teacher.describe(), "test_accuracy": teacher_accuracy, "student_agreement": agreement,
                    "temperature": cfg.temperature, "alpha": cfg.alpha, "transfer_labelled": len(splits.train),
                    "transfer_unlabelled": len(transfer), "transfer_augmented": len(augmented)}
    print(f"\nTest set ({evaluation.support} texts):\n{evaluation.text}")
    if scored.calibration:
        print(scored.calibration.summary())
    print(f"teacher {teacher_accuracy:.4f} accuracy on this test split; the student agrees with it on {agreement:.1%}")
    extra = {"distillation": distillation, **({"calibration": scored.calibration_json()} if scored.calibration else {})}
    metrics = publishing.export_metrics(evaluation, run_dir, splits.stats, calibration=extra.get("calibration"),
                                        distillation=distillation)
    version_dir = publishing.publish_run(trained, scored, splits.test, training.output_for(train_cfg.output, run_dir),
                                         run_dir, configs, metrics, train_cfg.errors,
                                         extra={"data": splits.stats["split_sizes"], **extra})
    print(f"accuracy {evaluation.accuracy:.4f}  weighted F1 {evaluation.weighted_f1:.4f}  (teacher {teacher_accuracy:.4f})")
    print(f"report:   {run_dir / 'report.txt'}")
    print(f"exported: {version_dir}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
