"""Long texts and BERT: keep the head, or the head and the tail (Sun et al. 2019)? ChnSentiCorp
(leakage-free), `--max-length` 64 and 128, the rule chosen on dev per length, test reported.

    python bench/bench_truncation.py [--chnsenticorp ../shared/datasets/chnsenticorp]   # ~15 min on 2 cores

The BERT is bench_bert_parity.py's: 2 layers, hidden 128, random initialisation with a WordPiece
vocabulary of the training texts (no pretrained Chinese BERT can be downloaded here), 2 epochs at
lr 2e-4, batch 32; every run starts from the same seeded weights. With a pretrained BERT the
absolute figures are far higher; the question here is only which word pieces to keep.
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

from bench.bench_bert_parity import make_checkpoint  # noqa: E402
from bench.bench_chnsenticorp import DEFAULT_DATA, split_files  # noqa: E402

RULES = ("head", "head+tail")
LENGTHS = (64, 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir")
    args = parser.parse_args()
    files = split_files(args.chnsenticorp)

    from transformers import BertTokenizerFast

    from sentiment_tf import train
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.core.errors import setup_logging
    from sentiment_tf.data.splits import load_splits

    setup_logging()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_truncation_"))
    work.mkdir(parents=True, exist_ok=True)
    splits = load_splits(DataConfig(data=str(files["train"]), val_data=str(files["dev"]), test_data=str(files["test"]),
                                    text_col="text_a", label_col="label"))
    shape = argparse.Namespace(hidden_size=128, layers=2, heads=2, intermediate_size=512, max_length=128, vocab_size=8000)
    init = make_checkpoint(splits, work, shape)
    tok = BertTokenizerFast.from_pretrained(str(init))
    pieces = {name: np.array([len(tok.tokenize(t)) for t in frame["text"]])
              for name, frame in (("dev", splits.val), ("test", splits.test))}
    results = {}
    for length in LENGTHS:
        for rule in RULES:
            out = work / f"L{length}_{rule}"
            assert train.main(["--model", "bert", "--pretrained", str(init), "--data", str(files["train"]),
                               "--val-data", str(files["dev"]), "--test-data", str(files["test"]), "--text-col", "text_a",
                               "--label-col", "label", "--epochs", "2", "--batch-size", "32", "--learning-rate", "2e-4",
                               "--patience", "2", "--max-length", str(length), "--truncation", rule, "--errors", "0",
                               "--output", str(out / "model"), "--run-dir", str(out / "run")]) == 0
            report = json.loads((out / "run" / "report.json").read_text(encoding="utf-8"))
            best = int(np.argmin(report["history"]["val_loss"]))
            results[length, rule] = {"dev": report["history"]["val_accuracy"][best], "test": report["accuracy"]}

    print(f"\nBERT (2 × 128, random init) on ChnSentiCorp, leakage-free ({len(splits.train)} / {len(splits.val)} / "
          f"{len(splits.test)}); word pieces per text: dev median {int(np.median(pieces['dev']))}, "
          f"95th percentile {int(np.percentile(pieces['dev'], 95))}")
    print(f"{'max length':>10}{'texts cut (dev)':>17}{'rule':>11}{'dev acc':>9}{'test acc':>10}")
    for length in LENGTHS:
        cut = float((pieces["dev"] > length - 2).mean())
        chosen = max(RULES, key=lambda r: results[length, r]["dev"])
        for rule in RULES:
            r = results[length, rule]
            print(f"{length:>10}{100 * cut:>16.1f}%{rule:>11}{r['dev']:>9.4f}{r['test']:>10.4f}"
                  + ("   ← chosen on dev" if rule == chosen else ""))
        gain = 100 * (results[length, "head+tail"]["test"] - results[length, "head"]["test"])
        print(f"{'':>10}head+tail − head on test: {gain:+.2f} pt")
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
