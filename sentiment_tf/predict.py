"""Predict with an exported model: ``python -m sentiment_tf.predict --model DIR "这家酒店很干净"``.

Loading checks that the directory is a sentiment_tf export and rebuilds the tokenizer from the
settings recorded at training time (jieba version, HMM flag, user dictionary, stopwords); any
mismatch is refused rather than silently segmenting differently from training.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import sys
from pathlib import Path

import numpy as np

from sentiment_tf import atomic
from sentiment_tf.errors import UserError, run_cli, setup_logging
from sentiment_tf.export import META_DIR, read_metadata, resolve_version_dir
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
        import tensorflow as tf

        super().__init__(version_dir, metadata, tokenizer)
        if metadata.get("input_format") == "raw":
            import tensorflow_text  # noqa: F401 - registers the tokenizer ops the graph uses
        self._signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]

    def predict(self, texts: list[str], batch_size: int = 256, prepared: bool = False) -> Predictions:
        """Predictions for raw texts (or, with ``prepared``, for what :meth:`prepare` returns)."""
        import tensorflow as tf

        inputs = [str(t) for t in texts] if prepared else self.prepare([str(t) for t in texts])
        # Similar lengths per batch: the signature pads each batch only to its longest text.
        order = np.argsort([len(s) for s in inputs], kind="stable")
        probs = np.zeros((len(inputs), len(self.label_names)), dtype=np.float32)
        for start in range(0, len(inputs), batch_size):
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


def _read_inputs(args: argparse.Namespace) -> list[str]:
    if args.input:
        from sentiment_tf.data import TEXT, read_table

        path = Path(args.input)
        if path.suffix.lower() == ".txt":
            from sentiment_tf.data import decode_bytes

            if not path.is_file():
                raise UserError(f"input file not found: {path}")
            text, _ = decode_bytes(path.read_bytes(), path)
            return [line for line in text.splitlines() if line.strip()]
        return [t if isinstance(t, str) else "" for t in read_table(path, args.text_col, None)[TEXT]]
    return list(args.texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sentiment_tf.predict", description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="Texts to classify.")
    parser.add_argument("--model", required=True, help="Export version directory, or a base directory "
                        "(its newest version is used).")
    parser.add_argument("--input", help="Read texts from a .txt file (one per line) or a CSV/TSV/JSONL/Excel "
                        "file (column --text-col).")
    parser.add_argument("--text-col", default="text", help="Text column of --input. [default: text]")
    parser.add_argument("--output", help="Write predictions as CSV (text, label, one probability column "
                        "per label) instead of printing them.")
    parser.add_argument("--batch-size", type=int, default=256, help="Texts per model call. [default: 256]")
    parser.add_argument("--verbose", action="store_true", help="Debug logging.")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.input and args.texts:
        raise UserError("give texts on the command line or --input FILE, not both")
    texts = _read_inputs(args)
    if not texts:
        raise UserError("nothing to classify: pass texts as arguments or --input FILE")
    predictor = Predictor.load(args.model)
    preds = predictor.predict(texts, batch_size=args.batch_size)
    if args.output:
        import pandas as pd

        frame = pd.DataFrame({"text": texts, "label": preds.labels})
        for j, name in enumerate(preds.label_names):
            frame[f"prob_{name}"] = preds.probabilities[:, j].round(6)
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        atomic.write_text(args.output, buf.getvalue())
        print(f"wrote {len(frame)} predictions to {args.output} (model {predictor.version_dir})")
    else:
        for text, label, p in zip(texts, preds.labels, preds.probabilities):
            print(f"{label}\t{p.max():.4f}\t{text}")
    return 0


def cli() -> None:
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
