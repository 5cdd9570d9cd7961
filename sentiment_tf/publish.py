"""Publish a trained model that a run kept because its export failed (the export check, a full disk,
permissions): ``python -m sentiment_tf.publish --run RUN [--output DIR]``.

The kept model (``RUN/unverified-export/``) is exported as a new version of the run's ``--output``
(or ``--output``), through the same check as every export.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from sentiment_tf.core.errors import UserError, run_cli, setup_logging
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


def main(argv: list[str] | None = None) -> int:
    """Exports a run's kept model (after a failed export check, a full disk or a permission error)."""
    parser = argparse.ArgumentParser(prog="python -m sentiment_tf.publish", description=main.__doc__)
    parser.add_argument("--run", required=True, help="run directory of `train` or `finetune` (it holds "
                        f"{FAILED_EXPORT}/)")
    parser.add_argument("--output", help="export base directory (default: where the run was exporting to)")
    args = parser.parse_args(argv)
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


def cli() -> None:
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
