"""Predict with an exported model: ``python -m sentiment_tf.predict --model DIR "这家酒店很干净"``.

    python -m sentiment_tf.predict --model saved_models/lstm --input reviews.csv --text-col review --output preds.csv
    python -m sentiment_tf.predict --model saved_models/lstm --list-versions

In Python, use :class:`sentiment_tf.serving.predictor.Predictor`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs, require
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data import streaming
from sentiment_tf.data.cleaning import NOTHING_TO_CLASSIFY
from sentiment_tf.export.versions import describe_versions
from sentiment_tf.serving.predictor import Predictions, Predictor

log = logging.getLogger("sentiment_tf.predict")

__all__ = ["Predictor", "Predictions", "main"]  # Predictor is importable from here too, as it always was


def with_predictions(frame: Any, preds: Predictions) -> Any:
    """``frame`` with ``pred_label`` and one ``pred_prob_<label>`` column per label appended (replacing
    columns of those names, as when predicting on an earlier output)."""
    out = frame.copy()
    out["pred_label"] = preds.labels  # None (an empty cell) where the text has nothing to classify
    nothing = preds.nothing if preds.nothing is not None else np.zeros(len(out), bool)
    for j, name in enumerate(preds.label_names):
        out[f"pred_prob_{name}"] = np.where(nothing, np.nan, preds.probabilities[:, j].round(6))
    return out


@dataclasses.dataclass
class PredictConfig:
    """What to classify, with which export, and where the predictions go."""

    texts: list[str] = option("Texts to classify.", positional="*", default_factory=list)
    model: str = option("Export version directory, or a base directory (its newest version is used).", default="")
    input: str | None = option("Read texts from a .txt file (one per line) or a CSV/TSV/JSONL/Excel file (column "
                               "--text-col).", default=None)
    text_col: str = option("Text column of --input.", default="text")
    output: str | None = option("Write a CSV: the input's columns, then pred_label and one pred_prob_<label> column "
                                "per label.", default=None)
    excel: bool = option("Write --output as UTF-8 with a byte-order mark, which Excel needs to show Chinese (done "
                         "anyway when the input had one).", default=False)
    long_text: Literal["cut", "window"] = option(
        "A text longer than the model reads: 'cut' scores its beginning (or what --truncation kept in training), "
        "'window' scores overlapping windows and averages them.", default="cut")
    batch_size: int = option("Texts per model call.", at_least=1, default=256)
    chunk_size: int = option("Rows of --input read, predicted and written at a time (memory stays flat in the file's "
                             "size; a killed run with --output continues after its last written chunk when started "
                             "again).", at_least=1, default=20000)
    list_versions: bool = option("List the versions in --model (a base directory): date, family, test metrics, "
                                 "training data, tokenizer; then exit.", default=False)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        require(self, "model")
        if self.input and self.texts:
            raise UserError("give texts on the command line or --input FILE, not both")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("predict", __doc__, PredictConfig)


def print_versions(base: str) -> None:
    rows = describe_versions(base)
    if not rows:
        raise UserError(f"--model {base} holds no versions yet")
    print(f"{'version':>7}  {'created':<25} {'family':<6} {'accuracy':>8} {'w-F1':>6} {'test':>5}  {'data':<20} tokenizer")
    for r in rows:
        if "problem" in r:
            print(f"{r['version']:>7}  (unusable: {r['problem']})")
            continue
        acc, f1 = (f"{r[k]:.4f}" if isinstance(r[k], float) else "-" for k in ("test_accuracy", "test_weighted_f1"))
        data = r["data"] or "-"
        if r["finetuned_from"]:
            data += f" (from {Path(r['finetuned_from']).parent.name}/{Path(r['finetuned_from']).name})"
        print(f"{r['version']:>7}  {r['created'] or '-':<25} {r['family'] or '-':<6} {acc:>8} {f1:>6} "
              f"{r['test_size'] or '-':>5}  {data:<20} {r['tokenizer']}")


def main(argv: list[str] | None = None) -> int:
    (args,), _ = parse_configs(build_parser(), argv, (PredictConfig,))
    setup_logging(args.verbose)
    if args.list_versions:
        print_versions(args.model)
        return 0
    if args.output:
        atomic.check_writable(args.output, "--output")
    if args.input:
        chunks, encoding = streaming.read_chunks(args.input, args.text_col, args.chunk_size)
    else:
        chunks, encoding = iter([pd.DataFrame({args.text_col: list(args.texts)})]), None
    first = next(chunks, None)
    if first is None or not len(first):
        raise UserError("nothing to classify: pass texts as arguments or --input FILE")
    predictor = Predictor.load(args.model)
    print(f"model: {predictor.version_dir} (version {predictor.version_dir.name}, trained "
          f"{predictor.metadata.get('created', '?')})", file=sys.stderr)
    writer = None
    if args.output:
        job = streaming.job_description(args.input, model=str(predictor.version_dir.resolve()), text_col=args.text_col,
                                        long_text=args.long_text) if args.input else {"texts": list(args.texts)}
        writer = streaming.ResumableCsv(args.output, job, bom=args.excel or encoding == "utf-8-sig")
        if writer.rows:
            print(f"resuming: {writer.rows} rows already in {writer.partial}", file=sys.stderr)
    skip, done, nothing, t0 = writer.rows if writer else 0, 0, 0, time.perf_counter()
    for chunk in itertools.chain([first], chunks):
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        chunk, skip = chunk.iloc[skip:], 0
        texts = [t if isinstance(t, str) else "" for t in chunk[args.text_col]]
        preds = predictor.predict(texts, batch_size=args.batch_size, long_text=args.long_text)
        done += len(texts)
        nothing += int(preds.nothing.sum())
        if writer is not None:
            writer.append(with_predictions(chunk, preds))
            log.info("%d rows written (%.0f texts/s)", writer.rows, done / (time.perf_counter() - t0))
        else:
            for i, (text, label, p) in enumerate(zip(texts, preds.labels, preds.probabilities)):
                print(f"{label}\t{p.max():.4f}\t{text}" if label is not None else f"-\t-\t{text}\t({preds.reason(i)})")
    if nothing:
        log.info("%d text(s) had nothing to classify (%s): no label given", nothing, NOTHING_TO_CLASSIFY)
    if writer is not None:
        writer.finish()
        print(f"wrote {writer.rows} predictions to {args.output}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
