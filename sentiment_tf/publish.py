"""Publish a trained model that a run kept because its export failed (the export check, a full disk,
permissions): ``python -m sentiment_tf.publish --run RUN [--output DIR]``; or write a new version of
an export made before jieba ran in the graph, one that takes raw text:
``python -m sentiment_tf.publish --upgrade saved_models/lstm [--texts FILE]``.

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

    def __post_init__(self) -> None:
        if bool(self.run) == bool(self.upgrade):
            raise UserError("give either --run RUN (a kept model) or --upgrade MODEL (an export that takes "
                            "segmented text)")
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
