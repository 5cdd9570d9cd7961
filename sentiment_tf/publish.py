"""Publish a trained model that a run kept because its export failed (the export check, a full disk,
permissions): ``python -m sentiment_tf.publish --run RUN [--output DIR]``.

The kept model (``RUN/unverified-export/``) is exported as a new version of the run's ``--output``
(or ``--output``), through the same check as every export.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs, require
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.export.versions import (
    FAILED_EXPORT,
    KEPT_INFO,
    META_DIR,
    check_base_dir,
    metadata_path,
    publish,
    read_metadata,
)
from sentiment_tf.models import family


@dataclasses.dataclass
class PublishConfig:
    """Exports a run's kept model (after a failed export check, a full disk or a permission error)."""

    run: str = option(f"Run directory of `train` or `finetune` (it holds {FAILED_EXPORT}/).", default="")
    output: str | None = option("Export base directory (default: where the run was exporting to).", default=None)

    def __post_init__(self) -> None:
        require(self, "run")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("publish", __doc__, PublishConfig)


def main(argv: list[str] | None = None) -> int:
    (args,), _ = parse_configs(build_parser(), argv, (PublishConfig,))
    setup_logging()
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


cli = entry_point(main)


if __name__ == "__main__":
    cli()
