"""The closing steps ``train`` and ``finetune`` share: score the test split (with a temperature fitted
on validation), then publish the export and write the run's reports beside it.

    scored = score_test(trained, splits.val, splits.test, labels, run_dir, calibrate=True)
    version_dir = publish_run(trained, scored, splits.test, output, run_dir, configs, metrics, errors=20)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.data.splits import TEXT, Y
from sentiment_tf.evaluation import attributions, calibration, drift, report
from sentiment_tf.export import model_card, versions


@dataclasses.dataclass
class Scored:
    """A trained model's test-split probabilities, their report, and the calibration that scaled them."""

    probabilities: np.ndarray
    evaluation: report.Evaluation
    calibration: calibration.Calibration | None

    def calibration_json(self) -> dict[str, Any] | None:
        return self.calibration.to_json() if self.calibration else None


def score_test(trained: Any, val: pd.DataFrame, test: pd.DataFrame, labels: list[str], run_dir: Path,
               calibrate: bool) -> Scored:
    """Fits one temperature on ``val`` (labels cannot change; ``run_dir/reliability.png``) when
    ``calibrate``, and evaluates ``trained`` on ``test``."""
    fitted = None
    if calibrate:
        fitted, probs = calibration.calibrate_trained(trained, val, test, run_dir / "reliability.png")
    else:
        probs = trained.predict_proba(test[TEXT].tolist())
    return Scored(probs, report.evaluate(test[Y].to_numpy(), probs, labels), fitted)


def export_metrics(evaluation: Any, run_dir: Path, data_stats: dict, **more: Any) -> dict[str, Any]:
    """What an export records of its run's test evaluation (train, finetune and distill alike), plus ``more``."""
    return {"test_accuracy": evaluation.accuracy, "test_weighted_f1": evaluation.weighted_f1,
            "test_size": evaluation.support, "run_dir": str(run_dir), "per_label": evaluation.per_label,
            "data": data_stats, **more}


def publish_run(trained: Any, scored: Scored, test: pd.DataFrame, output: Path, run_dir: Path, configs: dict,
                metrics: dict, errors: int, extra: dict[str, Any] | None = None) -> Path:
    """Publishes ``trained`` as a new verified version of ``output`` (its input profile from ``test``,
    for ``monitor``), then writes the run's reports: report.txt/json and plots, the model card, and
    the ``errors`` most confidently wrong test texts explained in errors.html. Returns the version."""
    test_texts = test[TEXT].tolist()
    trained.profile = drift.profile_of(trained, test_texts, scored.probabilities)
    version_dir = versions.publish(trained, output, configs, metrics, test_texts, run_dir)
    if errors:
        attributions.write_errors_page(trained, test, scored.probabilities, run_dir / "errors.html", errors)
    card = version_dir / versions.META_DIR / model_card.CARD_FILE
    atomic.write_bytes(run_dir / model_card.CARD_FILE, card.read_bytes())
    report.write_reports(run_dir, scored.evaluation, trained.history, extra={"export": str(version_dir), **(extra or {})})
    return version_dir
