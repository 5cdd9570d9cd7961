"""When can a validation set support a fitted temperature? Test log-loss and ECE with T fitted always
(the old rule) and with the held-out check `calibrate` applies (a T fitted on half of validation must
lower the other half's log-loss), on real runs and on validation sets cut smaller.

    python bench/bench_calibration_rule.py [--work DIR]        # ~10 min on 2 cores

Runs, each scored with its own validation and test split:

* ``bundled``: `train` (defaults) on data/reviews.csv;
* ``chnsenticorp``: `train` (defaults) on ChnSentiCorp, leakage-free;
* ``finetune <domain>``: `finetune` of the bundled model on 160 labelled reviews of one
  online_shopping_10_cats domain (16 validation texts, the case issue 32 saw getting worse), tested on
  1,000 other reviews of that domain.

Then, from the two large runs, validation subsets of 16 … 512 texts (100 draws each): how often a
fitted T makes test log-loss worse, and the mean change, under both rules. Lower is better; a rule that
keeps T = 1 changes nothing.
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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.bench_chnsenticorp import DEFAULT_DATA, split_files  # noqa: E402
from bench.bench_domain import DEFAULT_DATA as SHOPPING  # noqa: E402

DOMAINS = ["书籍", "蒙牛", "计算机", "酒店"]
SIZES = [16, 32, 64, 128, 256, 512]


def raw_probabilities(export: Path, run: Path, finetuned: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Validation and test probabilities of an export before its temperature, with the labels."""
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import LabelMap, load_splits
    from sentiment_tf.evaluation import calibration
    from sentiment_tf.serving.predictor import Predictor

    predictor = Predictor.load(export)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))["DataConfig"]
    splits = load_splits(DataConfig(**config), labels=LabelMap(predictor.label_names) if finetuned else None)
    out = {}
    for name, frame in (("val", splits.val), ("test", splits.test)):
        calibrated = predictor.predict(frame["text"].tolist(), batch_size=256).probabilities
        out[name] = (calibration.scale(calibrated, 1.0 / predictor.metadata.get("temperature", 1.0)),
                     frame["y"].to_numpy())
    return out


MIN_ERRORS = (5, 10, 20)


def rules(val: tuple, test: tuple) -> dict[str, tuple[float, float, float]]:
    """Per rule: (T, test NLL change, test ECE change) against T = 1."""
    from sentiment_tf.evaluation import calibration

    (pv, yv), (pt, yt) = val, test
    fitted = calibration.fit_temperature(pv, yv)
    supported = calibration.held_out_gain(pv, yv) > 0
    errors = int((pv.argmax(1) != yv).sum())
    base_nll, base_ece = calibration.nll(pt, yt), calibration.ece(pt, yt)

    def change(t: float) -> tuple[float, float, float]:
        scaled = calibration.scale(pt, t)
        return t, calibration.nll(scaled, yt) - base_nll, calibration.ece(scaled, yt) - base_ece

    out = {"always": change(fitted), "held-out check": change(fitted if supported else 1.0)}
    for k in MIN_ERRORS:
        out[f">= {k} errors"] = change(fitted if errors >= k else 1.0)
        out[f"check + >= {k} errors"] = change(fitted if supported and errors >= k else 1.0)
    out["calibrate()"] = change(calibration.calibrate(pv, yv).temperature)  # what train and finetune do
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA))
    parser.add_argument("--shopping", default=str(SHOPPING))
    parser.add_argument("--work")
    args = parser.parse_args()
    from sentiment_tf import finetune, train
    from sentiment_tf.core.errors import setup_logging

    setup_logging()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-calibration-rule-"))
    work.mkdir(parents=True, exist_ok=True)
    files = split_files(args.chnsenticorp)

    def trained(name: str, argv: list[str], command=train) -> tuple[Path, Path]:
        export, run = work / name / "model", work / name / "run"
        if not (run / "report.json").is_file():
            assert command.main([*argv, "--output", str(export), "--run-dir", str(run)]) == 0
        return export, run

    runs = {"bundled": (*trained("bundled", []), False),
            "chnsenticorp": (*trained("chnsenticorp", ["--data", str(files["train"]), "--val-data", str(files["dev"]),
                                                       "--test-data", str(files["test"]), "--text-col", "text_a",
                                                       "--label-col", "label"]), False)}
    shopping = pd.read_csv(args.shopping).dropna()
    shopping["label"] = shopping["label"].map({1: "正面", 0: "负面"})
    for domain in DOMAINS:
        rows = shopping[shopping.cat == domain].drop_duplicates("review").sample(frac=1.0, random_state=0)
        labelled = pd.concat([rows[rows.label == v].head(80) for v in ("正面", "负面")])
        test = rows[~rows.review.isin(labelled.review)].head(1000)
        labelled.rename(columns={"review": "text"})[["text", "label"]].to_csv(work / f"{domain}.csv", index=False)
        test.rename(columns={"review": "text"})[["text", "label"]].to_csv(work / f"{domain}-test.csv", index=False)
        runs[f"finetune {domain}"] = (*trained(f"finetune-{domain}", [
            "--from", str(runs["bundled"][0]), "--data", str(work / f"{domain}.csv"),
            "--test-data", str(work / f"{domain}-test.csv"), "--replay", "0"], finetune), True)

    print(f"\n{'run':<18}{'val':>6}{'test':>6}  {'rule':<16}{'T':>7}{'Δ test NLL':>12}{'Δ test ECE':>12}")
    probs = {}
    for name, (export, run, finetuned) in runs.items():
        probs[name] = raw_probabilities(export, run, finetuned)
        for rule, (t, d_nll, d_ece) in rules(probs[name]["val"], probs[name]["test"]).items():
            print(f"{name:<18}{len(probs[name]['val'][1]):>6}{len(probs[name]['test'][1]):>6}  {rule:<16}{t:>7.3f}"
                  f"{d_nll:>+12.4f}{d_ece:>+12.4f}")

    print("\nvalidation cut to n texts (100 draws each): per rule, the share of draws whose T made test NLL worse, "
          "the mean Δ test NLL and the share where T was fitted")
    rng = np.random.default_rng(0)
    for name in ("bundled", "chnsenticorp"):
        (pv, yv), test = probs[name]["val"], probs[name]["test"]
        for n in SIZES:
            results = []
            for _ in range(100):
                pick = rng.choice(len(yv), n, replace=False)
                results.append(rules((pv[pick], yv[pick]), test))
            for rule in results[0]:
                d = np.array([r[rule][1] for r in results])
                fitted = np.mean([r[rule][0] != 1.0 for r in results])
                print(f"{name:<14}{n:>5}  {rule:<22}{np.mean(d > 1e-9):>7.0%} worse{d.mean():>+10.4f}{fitted:>8.0%} fitted")
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
