"""Calibration: `train`'s LSTM (defaults) on the bundled corpus and on ChnSentiCorp (leakage-free),
test ECE / Brier / NLL before and after the temperature fitted on validation, and test accuracy
before and after (temperature scaling cannot move the argmax).

    python bench/bench_calibration.py [--chnsenticorp ../shared/datasets/chnsenticorp]   # ~10 min on 2 cores

ECE: top-label confidence, 15 equal-width bins (Guo et al. 2017). Each run's reliability diagram is
``<work>/<dataset>/run/reliability.png``. Target (issue 19): test ECE ≤ 0.02 on both, accuracy unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_chnsenticorp import DEFAULT_DATA, split_files  # noqa: E402


def run(name: str, data_args: list[str], work: Path) -> dict:
    from sentiment_tf import train
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import load_splits
    from sentiment_tf.evaluation import calibration
    from sentiment_tf.export.versions import read_metadata
    from sentiment_tf.serving.predictor import Predictor

    out = work / name
    assert train.main([*data_args, "--output", str(out / "model"), "--run-dir", str(out / "run")]) == 0
    result = json.loads((out / "run" / "report.json").read_text(encoding="utf-8"))["calibration"]
    # Accuracy before/after from the export itself: raw probabilities are the calibrated ones at T = 1.
    config = json.loads((out / "run" / "config.json").read_text(encoding="utf-8"))
    test = load_splits(DataConfig(**config["DataConfig"])).test  # the run's own test split
    predictor = Predictor.load(out / "model")
    temperature = read_metadata(predictor.version_dir)["temperature"]
    calibrated = predictor.predict(test["text"].tolist()).probabilities
    raw = calibration.scale(calibrated, 1.0 / temperature)  # undo the graph's temperature
    y = test["y"].to_numpy()
    result["accuracy"] = {"before": float((raw.argmax(1) == y).mean()), "after": float((calibrated.argmax(1) == y).mean())}
    result["served_ece"] = calibration.ece(calibrated, y)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir")
    args = parser.parse_args()
    files = split_files(args.chnsenticorp)

    from sentiment_tf.core.errors import setup_logging

    setup_logging()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_calibration_"))
    results = {
        "bundled": run("bundled", [], work),
        "chnsenticorp": run("chnsenticorp", ["--data", str(files["train"]), "--val-data", str(files["dev"]),
                                             "--test-data", str(files["test"]), "--text-col", "text_a",
                                             "--label-col", "label"], work),
    }
    print("\nLSTM (train defaults), test split: before → after temperature scaling (fitted on validation)")
    print(f"{'dataset':<14}{'T':>7}{'ECE':>18}{'Brier':>18}{'NLL':>18}{'accuracy':>18}{'served ECE':>12}")
    for name, r in results.items():
        b, a, acc = r["before"]["test"], r["after"]["test"], r["accuracy"]
        print(f"{name:<14}{r['temperature']:>7.3f}{b['ece']:>9.4f} → {a['ece']:.4f}{b['brier']:>9.4f} → {a['brier']:.4f}"
              f"{b['nll']:>9.4f} → {a['nll']:.4f}{acc['before']:>9.4f} → {acc['after']:.4f}{r['served_ece']:>12.4f}")
    print()
    for name, r in results.items():
        ece, acc = r["after"]["test"]["ece"], r["accuracy"]
        print(f"{name}: test ECE {ece:.4f} (target ≤ 0.02) {'PASS' if ece <= 0.02 else 'FAIL'}; accuracy "
              f"{'unchanged PASS' if acc['before'] == acc['after'] else 'changed FAIL'}")
    print(f"work directory (reliability.png per run): {work}")


if __name__ == "__main__":
    main()
