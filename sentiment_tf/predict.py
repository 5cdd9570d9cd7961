"""Predict with an exported model: ``python -m sentiment_tf.predict --model DIR "这家酒店很干净"``.

    python -m sentiment_tf.predict --model saved_models/lstm --input reviews.csv --text-col review --output preds.csv
    python -m sentiment_tf.predict --model saved_models/lstm --list-versions

In Python, use :class:`sentiment_tf.predictor.Predictor`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sentiment_tf import atomic
from sentiment_tf.data import read_text_rows
from sentiment_tf.errors import UserError, run_cli, setup_logging
from sentiment_tf.export import describe_versions
from sentiment_tf.predictor import Predictions, Predictor

__all__ = ["Predictor", "Predictions", "main"]  # Predictor is importable from here too, as it always was


def read_inputs(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The input table (every column kept; texts in ``--text-col``) and its encoding."""
    import pandas as pd

    if args.input:
        return read_text_rows(args.input, args.text_col, "input")
    return pd.DataFrame({args.text_col: list(args.texts)}), None


def with_predictions(frame: Any, preds: Predictions) -> Any:
    """``frame`` with ``pred_label`` and one ``pred_prob_<label>`` column per label appended (replacing
    columns of those names, as when predicting on an earlier output)."""
    out = frame.copy()
    out["pred_label"] = preds.labels
    for j, name in enumerate(preds.label_names):
        out[f"pred_prob_{name}"] = preds.probabilities[:, j].round(6)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sentiment_tf.predict", description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="Texts to classify.")
    parser.add_argument("--model", required=True, help="Export version directory, or a base directory "
                        "(its newest version is used).")
    parser.add_argument("--input", help="Read texts from a .txt file (one per line) or a CSV/TSV/JSONL/Excel "
                        "file (column --text-col).")
    parser.add_argument("--text-col", default="text", help="Text column of --input. [default: text]")
    parser.add_argument("--output", help="Write a CSV: the input's columns, then pred_label and one "
                        "pred_prob_<label> column per label.")
    parser.add_argument("--excel", action="store_true", help="Write --output as UTF-8 with a byte-order mark, "
                        "which Excel needs to show Chinese (done anyway when the input had one).")
    parser.add_argument("--long-text", choices=["cut", "window"], default="cut",
                        help="A text longer than the model reads: 'cut' scores its beginning (or what --truncation "
                        "kept in training), 'window' scores overlapping windows and averages them. [default: cut]")
    parser.add_argument("--batch-size", type=int, default=256, help="Texts per model call. [default: 256]")
    parser.add_argument("--list-versions", action="store_true", help="List the versions in --model (a base "
                        "directory): date, family, test metrics, training data, tokenizer; then exit.")
    parser.add_argument("--verbose", action="store_true", help="Debug logging.")
    return parser


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
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.list_versions:
        print_versions(args.model)
        return 0
    if args.input and args.texts:
        raise UserError("give texts on the command line or --input FILE, not both")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.output:
        atomic.check_writable(args.output, "--output")
    frame, encoding = read_inputs(args)
    texts = [t if isinstance(t, str) else "" for t in frame[args.text_col]]
    if not texts:
        raise UserError("nothing to classify: pass texts as arguments or --input FILE")
    predictor = Predictor.load(args.model)
    print(f"model: {predictor.version_dir} (version {predictor.version_dir.name}, trained "
          f"{predictor.metadata.get('created', '?')})", file=sys.stderr)
    preds = predictor.predict(texts, batch_size=args.batch_size, long_text=args.long_text)
    if args.output:
        out = with_predictions(frame, preds)
        bom = args.excel or encoding == "utf-8-sig"
        atomic.write_bytes(args.output, out.to_csv(index=False).encode("utf-8-sig" if bom else "utf-8"))
        print(f"wrote {len(out)} predictions to {args.output}")
    else:
        for text, label, p in zip(texts, preds.labels, preds.probabilities):
            print(f"{label}\t{p.max():.4f}\t{text}")
    return 0


def cli() -> None:
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
