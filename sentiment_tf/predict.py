"""Predict with an exported model: ``python -m sentiment_tf.predict --model DIR "这家酒店很干净"``.

Loading checks that the directory is a sentiment_tf export and rebuilds the tokenizer from the
settings recorded at training time (jieba version, HMM flag, user dictionary, stopwords); any
mismatch is refused rather than silently segmenting differently from training.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_tf import atomic
from sentiment_tf.errors import UserError, run_cli, setup_logging
from sentiment_tf.export import META_DIR, load_saved_model, read_metadata, resolve_version_dir
from sentiment_tf.progress import progress
from sentiment_tf.text import Tokenizer, TokenizerSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Predictions:
    labels: list[str]  # predicted label name per text
    label_ids: np.ndarray  # [n] int
    probabilities: np.ndarray  # [n, num_labels], columns in ``label_names`` order
    label_names: list[str]


class ExportInputs:
    """What an export expects as input — labels, signature input name and the training-time tokenizer —
    without loading its graph (the TF Serving client needs only this)."""

    def __init__(self, version_dir: Path, metadata: dict, tokenizer: Tokenizer | None):
        self.version_dir = version_dir
        self.metadata = metadata
        self.tokenizer = tokenizer
        self.label_names: list[str] = list(metadata["labels"])
        self.input_name: str = metadata["signature"]["input"]

    @classmethod
    def load(cls, path: str | Path):
        version_dir = resolve_version_dir(path)
        meta = read_metadata(version_dir)
        tokenizer = None
        if meta.get("input_format") == "segmented":
            tokenizer = tokenizer_from_metadata(version_dir, meta)
        return cls(version_dir, meta, tokenizer)

    def prepare(self, texts: list[str]) -> list[str]:
        """What the serving signature expects: segmented text for LSTM exports, raw text for BERT exports
        (their graph cleans and tokenizes; cleaning twice would decode "&amp;#183;" twice)."""
        if self.tokenizer is not None:
            return self.tokenizer.segment(texts)
        if self.metadata.get("input_format") == "raw":
            return list(texts)
        raise UserError(f"{self.version_dir}: unknown input format {self.metadata.get('input_format')!r}; "
                        "was it exported by a newer sentiment_tf?")


class Predictor(ExportInputs):
    """A loaded export that takes raw texts.

    Example:
        >>> p = Predictor.load("saved_models/lstm")
        >>> p.predict(["这家酒店很干净"]).labels
        ['正面']
    """

    def __init__(self, version_dir: Path, metadata: dict, tokenizer: Tokenizer | None):
        super().__init__(version_dir, metadata, tokenizer)
        if metadata.get("input_format") == "raw":
            import tensorflow_text  # noqa: F401 - registers the tokenizer ops the graph uses
        self._signature = load_saved_model(version_dir).signatures["serving_default"]

    def predict(self, texts: list[str] | str, batch_size: int = 256, prepared: bool = False) -> Predictions:
        """Predictions for raw texts (or, with ``prepared``, for what :meth:`prepare` returns); a single
        string is one text."""
        import tensorflow as tf

        if isinstance(texts, str):
            texts = [texts]  # not one text per character
        inputs = [str(t) for t in texts] if prepared else self.prepare([str(t) for t in texts])
        # Similar lengths per batch: the signature pads each batch only to its longest text.
        order = np.argsort([len(s) for s in inputs], kind="stable")
        probs = np.zeros((len(inputs), len(self.label_names)), dtype=np.float32)
        for start in progress(range(0, len(inputs), batch_size), len(inputs), "predicting", per_item=batch_size):
            idx = order[start:start + batch_size]
            out = self._signature(**{self.input_name: tf.constant([inputs[i] for i in idx], dtype=tf.string)})
            probs[idx] = out["probabilities"].numpy()
        ids = probs.argmax(axis=-1) if len(inputs) else np.zeros((0,), dtype=np.int64)
        return Predictions([self.label_names[i] for i in ids], ids, probs, self.label_names)


def tokenizer_from_metadata(version_dir: Path, meta: dict) -> Tokenizer:
    """Rebuilds the training-time tokenizer from an export and verifies it matches exactly."""
    saved = TokenizerSettings(**meta["tokenizer"])
    extra = version_dir / META_DIR
    files = meta.get("tokenizer_files", {})
    user_dict = extra / files["user_dict"] if files.get("user_dict") else None
    stopwords = extra / files["stopwords"] if files.get("stopwords") else None
    tok = Tokenizer(mode=saved.mode, hmm=saved.hmm, lowercase=saved.lowercase, user_dict=user_dict,
                    stopwords=stopwords)
    tok.ensure_matches(saved)
    return tok


def read_inputs(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The input table (every column kept; texts in ``--text-col``) and its encoding."""
    import pandas as pd

    if args.input:
        from sentiment_tf.data import decode_bytes, read_frame

        path = Path(args.input)
        if path.suffix.lower() == ".txt":
            if not path.is_file():
                raise UserError(f"input file not found: {path}")
            text, enc = decode_bytes(path.read_bytes(), path)
            return pd.DataFrame({args.text_col: [line for line in text.splitlines() if line.strip()]}), enc
        frame, enc = read_frame(path)
        if args.text_col not in frame.columns:
            raise UserError(f"column {args.text_col!r} not found in {path}; its columns are: "
                            f"{', '.join(frame.columns) or '(none)'} (choose with --text-col)")
        return frame, enc
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
    parser.add_argument("--batch-size", type=int, default=256, help="Texts per model call. [default: 256]")
    parser.add_argument("--list-versions", action="store_true", help="List the versions in --model (a base "
                        "directory): date, family, test metrics, training data, tokenizer; then exit.")
    parser.add_argument("--verbose", action="store_true", help="Debug logging.")
    return parser


def print_versions(base: str) -> None:
    from sentiment_tf.export import describe_versions

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
    preds = predictor.predict(texts, batch_size=args.batch_size)
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
