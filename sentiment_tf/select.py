"""Choose which unlabelled texts to label next, for `finetune`: ``python -m sentiment_tf.select``.

    python -m sentiment_tf.select --model saved_models/lstm --unlabelled hotel.csv --budget 250 --output to_label.csv
    python -m sentiment_tf.select --model saved_models/lstm --unlabelled hotel.csv --budget 250 \\
        --strategy uncertainty --exclude labelled_round1.csv --output round2.csv

Strategies (``sentiment_tf.selection``): random, uncertainty (margin or entropy of the model's
calibrated probabilities), diverse (k-means++ over the model's pooled features), hybrid (BADGE:
k-means++ over gradient embeddings — uncertain *and* diverse; the default).

Texts are cleaned as the model's training data was; empty ones, duplicates (after cleaning), texts in
``--exclude`` files and rows whose ``--label-col`` is already filled are not candidates. The output
keeps the input's columns, in the order chosen, plus ``rank``, ``uncertainty`` and an empty
``--label-col`` to fill in; then ``finetune --data to_label.csv --text-col <col>`` reads it back
(rows left unlabelled are skipped and counted).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sys
from typing import Literal

import numpy as np
import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.cleaning import clean_text, cleaned_has_words
from sentiment_tf.data.streaming import read_chunks
from sentiment_tf.evaluation import selection
from sentiment_tf.export.versions import cleaning_lowercase, read_metadata, resolve_version_dir
from sentiment_tf.serving.predictor import Predictor

log = logging.getLogger("sentiment_tf.select")


@dataclasses.dataclass
class SelectConfig:
    """What to choose from, how many, and how."""

    model: str = option("Export (a version directory, or a base directory: its newest version).", default="")
    unlabelled: str = option("Texts to choose from: CSV/TSV/JSON lines/Excel (column --text-col) or .txt, one "
                             "per line.", default="")
    budget: int = option("How many texts to choose.", at_least=1, default=250)
    strategy: Literal["random", "uncertainty", "diverse", "hybrid"] = option(
        "random | uncertainty | diverse (k-means++ over the model's features) | hybrid (BADGE).", default="hybrid")
    uncertainty: Literal["margin", "entropy"] = option("Uncertainty measure (the score column; what "
                                                       "--strategy uncertainty ranks by).", default="margin")
    output: str = option("CSV to write: the chosen rows with rank, uncertainty and an empty label column.",
                         default="to_label.csv")
    text_col: str = option("Text column of --unlabelled and --exclude.", default="text")
    label_col: str = option("Label column added to the output (rows of --unlabelled where it is filled count "
                            "as labelled and are skipped).", default="label")
    exclude: list[str] = option("Files of texts already labelled (same --text-col); never chosen again.",
                                metavar="FILE", default_factory=list)
    seed: int = option("Seed: the same inputs and seed choose the same texts.", default=42)
    batch_size: int = option("Texts per model call.", at_least=1, default=256)
    chunk_size: int = option("Rows read at a time (the file may be bigger than memory).", at_least=1, default=20000)
    max_candidates: int = option("Choose among at most this many candidates: beyond it, a seeded uniform sample "
                                 "(reservoir sampling while reading), which bounds memory and time.", at_least=1,
                                 default=100000)
    excel: bool = option("Write UTF-8 with a byte-order mark (for Excel; done anyway when the input had one).",
                         default=False)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        config_lib.require(self, "model", "unlabelled")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("select", __doc__, SelectConfig)


def excluded_texts(cfg: SelectConfig, lowercase: bool) -> set[str]:
    out: set[str] = set()
    for path in cfg.exclude:
        chunks, _ = read_chunks(path, cfg.text_col, cfg.chunk_size, "--exclude")
        for chunk in chunks:
            out.update(clean_text(t, lowercase) for t in chunk[cfg.text_col] if isinstance(t, str))
    return out


def candidates(cfg: SelectConfig, lowercase: bool) -> tuple[pd.DataFrame, str | None, dict[str, int]]:
    """The rows of ``--unlabelled`` that may be chosen (read in chunks; beyond ``--max-candidates``, a
    seeded uniform sample of them, by reservoir sampling), in input order, and why the others may not."""
    excluded = excluded_texts(cfg, lowercase)
    chunks, encoding = read_chunks(cfg.unlabelled, cfg.text_col, cfg.chunk_size, "--unlabelled")
    rng = np.random.default_rng(cfg.seed)
    counts = {"rows": 0, "empty": 0, "labelled": 0, "excluded": 0, "duplicates": 0, "candidates": 0}
    seen: set[bytes] = set()  # digests, not texts: memory per distinct text stays small
    kept: list[tuple] = []
    columns: list[str] = []
    for chunk in chunks:
        columns = list(chunk.columns)
        labels = chunk[cfg.label_col] if cfg.label_col in chunk.columns else None
        for i, (row, text) in enumerate(zip(chunk.itertuples(index=False, name=None), chunk[cfg.text_col])):
            number = counts["rows"] + i
            cleaned = clean_text(text, lowercase) if isinstance(text, str) else ""
            digest = hashlib.blake2b(cleaned.encode("utf-8"), digest_size=16).digest()
            if not cleaned_has_words(cleaned):
                counts["empty"] += 1
            elif labels is not None and pd.notna(labels.iloc[i]) and str(labels.iloc[i]).strip():
                counts["labelled"] += 1
            elif cleaned in excluded:
                counts["excluded"] += 1
            elif digest in seen:
                counts["duplicates"] += 1
            else:
                seen.add(digest)
                k = counts["candidates"]
                counts["candidates"] += 1
                if len(kept) < cfg.max_candidates:
                    kept.append((number, row))
                else:
                    j = int(rng.integers(0, k + 1))
                    if j < cfg.max_candidates:
                        kept[j] = (number, row)
        counts["rows"] += len(chunk)
    kept.sort(key=lambda item: item[0])
    return pd.DataFrame([row for _, row in kept], columns=columns), encoding, counts


def main(argv: list[str] | None = None) -> int:
    (cfg,), _ = parse_configs(build_parser(), argv, (SelectConfig,))
    setup_logging(cfg.verbose)
    atomic.check_writable(cfg.output, "--output")
    version_dir = resolve_version_dir(cfg.model)
    meta = read_metadata(version_dir)
    lowercase = cleaning_lowercase(meta)
    frame, encoding, counts = candidates(cfg, lowercase)
    sampled = f" (a seeded sample of {len(frame)}: --max-candidates)" if len(frame) < counts["candidates"] else ""
    print(f"{counts['rows']} rows: {counts['empty']} with nothing to classify, {counts['labelled']} already labelled, "
          f"{counts['excluded']} in --exclude, {counts['duplicates']} duplicates → {counts['candidates']} candidates"
          f"{sampled}", file=sys.stderr)
    if cfg.budget > len(frame):
        raise UserError(f"--budget {cfg.budget} is more than the {len(frame)} candidate texts in {cfg.unlabelled}; "
                        "lower --budget (or label them all)" + (" or raise --max-candidates" if sampled else ""))
    predictor = Predictor.load(version_dir)
    texts = frame[cfg.text_col].tolist()
    if cfg.strategy in selection.NEEDS_EMBEDDINGS:
        embeddings, probs = predictor.embed(texts, cfg.batch_size)
    else:
        embeddings, probs = None, predictor.predict(texts, batch_size=cfg.batch_size).probabilities
    order = selection.choose(cfg.strategy, probs, embeddings, cfg.budget, cfg.seed, cfg.uncertainty)

    out = frame.iloc[order].copy()
    out["rank"] = np.arange(1, len(order) + 1)
    out["uncertainty"] = selection.uncertainty(probs, cfg.uncertainty)[order].round(6)
    out[cfg.label_col] = ""
    bom = cfg.excel or encoding == "utf-8-sig"
    atomic.write_bytes(cfg.output, out.to_csv(index=False).encode("utf-8-sig" if bom else "utf-8"))
    print(f"chose {len(out)} of {len(frame)} texts ({cfg.strategy}; mean uncertainty {out['uncertainty'].mean():.3f} "
          f"vs {selection.uncertainty(probs, cfg.uncertainty).mean():.3f} over all candidates) → {cfg.output}")
    print(f"label them in column {cfg.label_col!r} ({', '.join(predictor.label_names)}), then: python -m "
          f"sentiment_tf.finetune --from {cfg.model} --data {cfg.output} --text-col {cfg.text_col} "
          f"--label-col {cfg.label_col}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
