"""Run directories: list them, and clean the old ones (``runs/`` only grows otherwise).

    python -m sentiment_tf.runs list
    python -m sentiment_tf.runs clean --keep 5            # delete all but the 5 newest finished runs
    python -m sentiment_tf.runs clean --keep 5 --dry-run  # say what would go

A run that did not finish (it holds a resume backup) or whose export failed (it keeps the trained
model in ``unverified-export/``) is never deleted: it holds work that exists nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Literal

from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs
from sentiment_tf.core.errors import UserError, entry_point
from sentiment_tf.export.versions import FAILED_EXPORT
from sentiment_tf.models.training import BACKUP_DIR


@dataclasses.dataclass
class Run:
    path: Path
    modified: float
    size: int
    state: str  # "finished", "unfinished" (resumable) or "export failed"
    accuracy: float | None

    @property
    def keep_always(self) -> bool:
        return self.state != "finished"


def find_runs(root: Path) -> list[Run]:
    """The run directories (they hold config.json) under ``root``, newest first."""
    if not root.is_dir():
        raise UserError(f"--runs-dir {root}: no such directory")
    runs = []
    for path in root.iterdir():
        if not (path / "config.json").is_file():
            continue
        files = [p for p in path.rglob("*") if p.is_file()]
        state = ("export failed" if (path / FAILED_EXPORT).is_dir() else
                 "unfinished" if (path / BACKUP_DIR).is_dir() or not _finished(path) else "finished")
        report = path / "report.json"
        accuracy = json.loads(report.read_text(encoding="utf-8")).get("accuracy") if report.is_file() else None
        runs.append(Run(path, max([path.stat().st_mtime] + [p.stat().st_mtime for p in files]),
                        sum(p.stat().st_size for p in files), state, accuracy))
    return sorted(runs, key=lambda r: r.modified, reverse=True)


def _finished(path: Path) -> bool:
    # What train, finetune (each evaluation mode) and pretrain write last.
    return any((path / name).is_file() for name in ("report.json", "finetune_report.json", "learning_curve.json",
                                                     "cv.json", "seeds.json", "summary.json"))


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@dataclasses.dataclass
class RunsConfig:
    """'list': each run with when, size, state and test accuracy; 'clean': delete all but the newest
    --keep finished runs."""

    command: Literal["list", "clean"] = option("'list' or 'clean'.", positional="one", default="list")
    runs_dir: str = option("Where run directories are.", default="runs")
    keep: int | None = option("clean: finished runs to keep (newest first).", at_least=0, default=None)
    dry_run: bool = option("clean: only say what would be deleted.", default=False)

    def __post_init__(self) -> None:
        if self.command == "clean" and self.keep is None:
            raise UserError("clean: --keep is required (the number of finished runs to keep)")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("runs", __doc__, RunsConfig)


def main(argv: list[str] | None = None) -> int:
    (args,), _ = parse_configs(build_parser(), argv, (RunsConfig,))
    import datetime as _dt

    runs = find_runs(Path(args.runs_dir))
    if args.command == "list":
        for r in runs:
            when = _dt.datetime.fromtimestamp(r.modified).strftime("%Y-%m-%d %H:%M")
            acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
            print(f"{when}  {_mb(r.size):>10}  {r.state:<13}  acc {acc:<7} {r.path}")
        print(f"{len(runs)} runs, {_mb(sum(r.size for r in runs))}")
        return 0
    finished = [r for r in runs if not r.keep_always]
    doomed = finished[args.keep:]
    for r in doomed:
        if not args.dry_run:
            shutil.rmtree(r.path)
        print(f"{'would delete' if args.dry_run else 'deleted'} {r.path} ({_mb(r.size)})")
    kept_always = [r for r in runs if r.keep_always]
    print(f"{'would free' if args.dry_run else 'freed'} {_mb(sum(r.size for r in doomed))}; kept {len(runs) - len(doomed)} "
          f"runs ({len(kept_always)} unfinished or with a failed export, never deleted)")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
