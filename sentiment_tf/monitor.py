"""Has the data drifted from what the model was trained on? ``python -m sentiment_tf.monitor``.

    python -m sentiment_tf.monitor --model saved_models/lstm --data this_week.csv --text-col review
    python -m sentiment_tf.monitor --model saved_models/lstm --data this_week.csv --reference train.csv

Compares new texts with the export's recorded profile of its test split (or with ``--reference``, any
file of texts, measured now with the same model): OOV rate, length and confidence (PSI, KS), the
predicted-label mix (PSI), the share of texts with nothing to classify, and the top tokens. Prints a
table, writes ``drift.json`` and ``drift.png`` to ``--output``, and exits 0 (no drift), 1 (drift) or
2 (bad input), for cron or CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
from pathlib import Path

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.data.streaming import read_chunks
from sentiment_tf.evaluation import drift
from sentiment_tf.export.versions import META_DIR, cleaning_lowercase, read_metadata, resolve_version_dir
from sentiment_tf.serving.predictor import Predictor

EXIT_DRIFT = 1
MIN_TEXTS = 20  # fewer and a decile histogram is mostly noise


@dataclasses.dataclass
class MonitorConfig:
    """What to compare, and when a difference counts as drift."""

    model: str = option("Export (a version directory, or a base directory: its newest version).", default="")
    data: str = option("New texts: CSV/TSV/JSON lines/Excel (column --text-col) or .txt, one per line.", default="")
    reference: str | None = option("Compare with these texts instead of the export's recorded test-split profile "
                                   "(held-out texts compare best: on the model's own training data, OOV rate and "
                                   "confidence are optimistic, so for that file they are shown, not judged).",
                                   default=None)
    text_col: str = option("Text column of --data (and of --reference, unless --reference-text-col).", default="text")
    reference_text_col: str | None = option("Text column of --reference when it differs (e.g. the training data's).",
                                            default=None)
    output: str | None = option("Directory for drift.json and drift.png (default: runs/monitor-<time>).",
                                default=None)
    psi: float = option("PSI above this (length, confidence, predicted labels) is drift.", above=0, default=0.2)
    oov: float = option("OOV rate this much above the reference's (0.05 = 5 points) is drift.", above=0, default=0.05)
    nothing: float = option("Share of texts with nothing to classify this much above the reference's is drift.",
                            above=0, default=0.05)
    batch_size: int = option("Texts per model call.", at_least=1, default=256)
    chunk_size: int = option("Rows read and measured at a time (the file may be bigger than memory).", at_least=1,
                             default=20000)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        config_lib.require(self, "model", "data")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("monitor", __doc__, MonitorConfig)


def measure(predictor, path: str, text_col: str, batch_size: int, what: str, chunk_rows: int = 20000) -> drift.Sample:
    """The texts of one file under ``predictor`` — tokens, OOV, lengths, calibrated probabilities —
    read and measured in chunks, so the file may be bigger than memory."""
    lowercase = cleaning_lowercase(predictor.metadata)
    chunks, _ = read_chunks(path, text_col, chunk_rows, what)
    parts = []
    for chunk in chunks:
        texts = [t if isinstance(t, str) else "" for t in chunk[text_col]]
        probs = predictor.predict(texts, batch_size=batch_size).probabilities
        parts.append(drift.Sample.measure([clean_text(t, lowercase) for t in texts], predictor.tokens(texts), probs,
                                          predictor.label_names))
    return drift.Sample.concat(parts)


def check_enough(path: str, text_col: str, what: str) -> None:
    """Refuses (before the model loads) a file without the text column or with too few texts to compare."""
    chunks, _ = read_chunks(path, text_col, MIN_TEXTS, what)
    first = next(chunks, None)
    n = 0 if first is None else len(first)
    if n < MIN_TEXTS:
        raise UserError(f"{what} {path} has {n} texts; comparing distributions needs at least {MIN_TEXTS}")


def is_training_data(version_dir: Path, path: str) -> bool:
    """Whether ``path`` is the training file recorded in the export's config."""
    import json
    try:
        config = json.loads((version_dir / META_DIR / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    trained_on = (config.get("DataConfig") or {}).get("data")
    return bool(trained_on) and Path(trained_on).resolve() == Path(path).resolve()


def main(argv: list[str] | None = None) -> int:
    (cfg,), _ = parse_configs(build_parser(), argv, (MonitorConfig,))
    setup_logging(cfg.verbose)
    out_dir = Path(cfg.output) if cfg.output else Path("runs") / f"monitor-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    atomic.check_writable(out_dir, "--output", directory=True)
    version_dir = resolve_version_dir(cfg.model)
    meta = read_metadata(version_dir)
    if cfg.reference is None:
        reference = drift.check_profile(meta.get("profile"), meta["labels"], str(version_dir))
    check_enough(cfg.data, cfg.text_col, "--data")
    if cfg.reference is not None:
        check_enough(cfg.reference, cfg.reference_text_col or cfg.text_col, "--reference")
    predictor = Predictor.load(version_dir)
    if cfg.reference is not None:
        reference = measure(predictor, cfg.reference, cfg.reference_text_col or cfg.text_col, cfg.batch_size,
                            "--reference", cfg.chunk_size).profile()
    sample = measure(predictor, cfg.data, cfg.text_col, cfg.batch_size, "--data", cfg.chunk_size)
    checks = drift.compare(reference, sample, drift.Thresholds(cfg.psi, cfg.oov, cfg.nothing),
                           fitted_reference=cfg.reference is not None and is_training_data(version_dir, cfg.reference))
    drifted = [c for c in checks if c.drift]

    against = cfg.reference or f"the test split profile in {version_dir.name}/ ({reference['texts']} texts)"
    print(f"model {version_dir}; {len(sample.lengths)} texts of {cfg.data} against {against}\n")
    print(drift.table(checks))
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"model": str(version_dir), "data": cfg.data, "reference": cfg.reference or "export profile",
              "texts": int(len(sample.lengths)), "reference_texts": reference["texts"], "drift": bool(drifted),
              "checks": [c.to_json() for c in checks], "current_profile": sample.profile(),
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(out_dir / "drift.json", result)
    drift.plot(reference, sample, out_dir / "drift.png",
               f"{Path(cfg.data).name} vs {'reference' if cfg.reference else 'training profile'}: "
               + (f"DRIFT ({', '.join(dict.fromkeys(c.name for c in drifted))})" if drifted else "no drift"))
    verdict = (f"DRIFT: {', '.join(dict.fromkeys(c.name for c in drifted))}" if drifted else "no drift")
    print(f"\n{verdict}\nwrote {out_dir / 'drift.json'} and {out_dir / 'drift.png'}")
    return EXIT_DRIFT if drifted else 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
