"""Why this label? Per-token integrated gradients (Sundararajan et al. 2017) over the input embeddings.

    python -m sentiment_tf.explain --model saved_models/lstm "这家酒店很干净，但是服务太差了"
    python -m sentiment_tf.explain --model saved_models/bert --input reviews.csv --text-col review --output why.html

Each token's score is (embedding − baseline) · the gradient of the predicted label's logit averaged
along the straight path from the baseline (zero embeddings; for BERT [CLS]/[SEP] stay as they are),
by Gauss–Legendre quadrature (numpy's nodes; Captum's default too). Completeness: the scores sum to logit(text) − logit(baseline); the gap is
printed as ``completeness error``. Positive scores push towards the label, negative away. BERT's word
pieces are merged back into the characters and words of the (cleaned) text.

Output: coloured tokens in the terminal; ``--output X.html`` a self-contained page, ``--output X.png``
an image (both for every text).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs, require
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.cleaning import NOTHING_TO_CLASSIFY, clean_text, cleaned_has_words
from sentiment_tf.data.splits import read_text_rows
from sentiment_tf.evaluation.attributions import STEPS, Explanation, ansi, html_page, plain, png
from sentiment_tf.export.versions import cleaning_lowercase, read_metadata, resolve_version_dir
from sentiment_tf.models import family


@dataclasses.dataclass
class ExplainConfig:
    """What to explain, with which export, and where the pictures go."""

    texts: list[str] = option("Texts to explain.", positional="*", default_factory=list)
    model: str = option("Export: a version directory or its base directory.", default="")
    input: str | None = option("Explain the texts of this file (CSV/TSV/JSONL/Excel, or .txt one per line).",
                               default=None)
    text_col: str = option("Column holding the text in --input.", default="text")
    label: str | None = option("Explain this label instead of the predicted one.", default=None)
    steps: int = option("Quadrature points (more: smaller completeness error).", default=STEPS)
    max_texts: int = option("Explain at most this many texts.", default=200)
    output: str | None = option("Write an .html page or a .png image as well.", default=None)

    def __post_init__(self) -> None:
        require(self, "model")
        if not self.texts and not self.input:
            raise UserError("give texts to explain, or --input FILE")
        if self.steps < 1 or self.max_texts < 1:
            raise UserError("--steps and --max-texts must be at least 1")
        if self.output and Path(self.output).suffix.lower() not in (".html", ".png"):
            raise UserError(f"--output {self.output}: must end in .html or .png")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("explain", __doc__, ExplainConfig)


def main(argv: list[str] | None = None) -> int:
    (args,), _ = parse_configs(build_parser(), argv, (ExplainConfig,))
    setup_logging()
    if args.output:
        atomic.check_writable(args.output, "--output")
    version_dir = resolve_version_dir(args.model)
    metadata = read_metadata(version_dir)
    if args.label is not None and args.label not in metadata["labels"]:
        raise UserError(f"--label {args.label}: not a label of this model ({', '.join(metadata['labels'])})")
    texts = list(args.texts)
    if args.input:
        frame, _ = read_text_rows(args.input, args.text_col, "--input")
        texts += frame[args.text_col].fillna("").astype(str).tolist()  # an empty cell is "", not "nan"
    texts = texts[: args.max_texts]
    lowercase = cleaning_lowercase(metadata)
    cleaned = [clean_text(t, lowercase) for t in texts]
    trained = family.load_trained(version_dir, metadata)
    target = None if args.label is None else metadata["labels"].index(args.label)
    # The rule every command follows: a text with nothing to classify gets no label, and no attribution.
    words = [i for i, t in enumerate(cleaned) if cleaned_has_words(t)]
    explained = iter(trained.explain([cleaned[i] for i in words], steps=args.steps,
                                     targets=None if target is None else [target] * len(words)) if words else [])
    explanations = [next(explained) if cleaned_has_words(t) else Explanation.nothing(t, NOTHING_TO_CLASSIFY)
                    for t in cleaned]
    color = sys.stdout.isatty()
    for e in explanations:
        if e.label is None:
            print(f"{e.head}\n  {e.text}")
            continue
        print(f"{e.head}  (completeness error {e.completeness_error:.2g})")
        print(f"  {ansi(e) if color else plain(e)}")
    if args.output and args.output.lower().endswith(".html"):
        atomic.write_text(args.output, html_page(explanations))
    elif args.output:
        png(explanations, args.output)
    if args.output:
        print(f"written: {args.output}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
