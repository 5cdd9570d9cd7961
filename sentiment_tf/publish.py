"""Publish a trained model that a run kept because its export failed (the export check, a full disk,
permissions): ``python -m sentiment_tf.publish --run RUN [--output DIR]``; or write a new version of
an export made before jieba ran in the graph, one that takes raw text:
``python -m sentiment_tf.publish --upgrade saved_models/lstm [--texts FILE]``; or write a fine-tuned BERT
export as a Hugging Face ``save_pretrained`` directory:
``python -m sentiment_tf.publish --hf saved_models/bert --output bert-hf/``.

The kept model (``RUN/unverified-export/``) is exported as a new version of the run's ``--output``
(or ``--output``), through the same check as every export. An upgraded export is checked on
``--texts`` (one text per line, or a CSV's ``text`` column) and, as every LSTM export, on sentences of
its own vocabulary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.export.versions import (
    FAILED_EXPORT,
    KEPT_INFO,
    META_DIR,
    check_base_dir,
    metadata_path,
    publish,
    read_metadata,
    resolve_version_dir,
)
from sentiment_tf.models import family


@dataclasses.dataclass
class PublishConfig:
    """Exports a run's kept model (after a failed export check, a full disk or a permission error)."""

    run: str = option(f"Run directory of `train` or `finetune` (it holds {FAILED_EXPORT}/).", default="")
    output: str | None = option("Export base directory (default: where the run was exporting to; with --upgrade, "
                                "the model's own).", default=None)
    upgrade: str = option("An export (base or version directory) whose signature takes segmented text: write a new "
                          "version of it that takes raw text, jieba in the graph.", default="")
    texts: str = option("With --upgrade: texts to check the new export's tokens and probabilities on (one per line, "
                        "or a CSV with a 'text' column).", default="")
    hf: str = option("A BERT export (base or version directory): write it to --output as a Hugging Face "
                     "save_pretrained directory (PyTorch-layout model.safetensors, config with id2label, tokenizer, "
                     "README.md model card) that from_pretrained and the Hub take.", default="")
    tf_weights: bool = option("With --hf: also write tf_model.h5, for TFBertForSequenceClassification.from_pretrained("
                              "DIR, use_safetensors=False) (transformers 4.55+ cannot read PyTorch safetensors "
                              "into TF classes).", default=False)

    def __post_init__(self) -> None:
        if sum(map(bool, (self.run, self.upgrade, self.hf))) != 1:
            raise UserError("give one of --run RUN (a kept model), --upgrade MODEL (an export that takes "
                            "segmented text) or --hf MODEL --output DIR (a Hugging Face directory)")
        if self.hf and not self.output:
            raise UserError("--hf: give --output DIR, the Hugging Face directory to create")
        if self.texts and not self.upgrade:
            raise UserError("--texts goes with --upgrade")
        if self.texts and not Path(self.texts).is_file():
            raise UserError(f"--texts {self.texts}: file not found")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("publish", __doc__, PublishConfig)


def main(argv: list[str] | None = None) -> int:
    (args,), _ = parse_configs(build_parser(), argv, (PublishConfig,))
    setup_logging()
    if args.upgrade:
        return upgrade(args)
    if args.hf:
        return hugging_face(args)
    run = Path(args.run)
    kept = run / FAILED_EXPORT
    if not metadata_path(kept).is_file() or not (run / KEPT_INFO).is_file():
        raise UserError(f"--run {run}: no {FAILED_EXPORT}/ in it; only a run whose export failed is exported "
                        "again (a run that exported has its version in its --output)")
    info = json.loads((run / KEPT_INFO).read_text(encoding="utf-8"))
    output = args.output or info["output"]
    check_base_dir(output)
    meta = read_metadata(kept)
    configs = json.loads((kept / META_DIR / "config.json").read_text(encoding="utf-8"))  # passed on as saved
    trained = family.load_trained(kept, meta)
    version = publish(trained, output, configs, meta.get("metrics", {}), info["check_texts"], run)
    shutil.rmtree(kept, ignore_errors=True)
    print(f"exported: {version}")
    return 0


def upgrade(args: PublishConfig) -> int:
    """A new version of an export that takes segmented text, with the same model taking raw text."""
    version_dir = resolve_version_dir(args.upgrade)
    meta = read_metadata(version_dir)
    if meta.get("input_format") != "segmented":
        raise UserError(f"--upgrade {args.upgrade}: {version_dir} takes raw text already; nothing to upgrade")
    output = Path(args.output) if args.output else version_dir.parent
    check_base_dir(output)
    check_texts = read_texts(Path(args.texts)) if args.texts else []
    trained = family.load_trained(version_dir, meta)  # checks this machine's jieba against the export's
    configs = json.loads((version_dir / META_DIR / "config.json").read_text(encoding="utf-8"))
    version = trained.export(output, configs, meta.get("metrics", {}), check_texts)
    print(f"exported: {version} (version {version_dir.name}, taking raw text)")
    return 0


def hugging_face(args: PublishConfig) -> int:
    """The export's fine-tuned model as a ``save_pretrained`` directory, checked by loading it back."""
    version_dir = resolve_version_dir(args.hf)
    meta = read_metadata(version_dir)
    if not family.recipe(meta.get("family", "?")).hugging_face:
        raise UserError(f"--hf {args.hf}: an {meta.get('family')} export has no Hugging Face transformers form; "
                        "only BERT exports do")
    out = Path(args.output)
    atomic.check_new_directory(out, "--output")
    trained = family.load_trained(version_dir, meta)
    written = trained.save_pretrained(version_dir, meta, out, args.tf_weights)
    tf_side = (f"TFBertForSequenceClassification.from_pretrained('{written}', use_safetensors=False)" if args.tf_weights
               else "TF classes need --tf-weights")
    print(f"written: {written} (version {version_dir.name}); BertForSequenceClassification.from_pretrained("
          f"'{written}') loads it; {tf_side}")
    return 0


def read_texts(path: Path) -> list[str]:
    """Texts of a file: a CSV's ``text`` column, else one text per line."""
    if path.suffix.lower() == ".csv":
        import pandas as pd

        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as err:  # noqa: BLE001 - pandas raises many parser errors
            raise UserError(f"--texts {path}: cannot read it as CSV ({err})") from None
        if "text" not in frame.columns:
            raise UserError(f"--texts {path}: no 'text' column (columns: {', '.join(map(str, frame.columns))})")
        return frame["text"].tolist()
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UserError(f"--texts {path}: not UTF-8 text") from None


cli = entry_point(main)


if __name__ == "__main__":
    cli()
