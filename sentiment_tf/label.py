"""Label a domain's texts in the browser, the model in the loop: ``python -m sentiment_tf.label``.

    python -m sentiment_tf.label --model saved_models/lstm --unlabelled hotel.csv --output hotel_labels.csv
    # open http://127.0.0.1:8600 ; keys: 1 2 … a label, s skip, z or Backspace undo, a adapt now

One text at a time, the one the active-learning strategy (``select``'s) wants next, re-ranked at every
pick; the model's suggestion, its probability and the words that decided it (``explain``'s attributions).
Each label is written to ``--output`` at once (atomically): a restarted page continues where it stopped
and never shows a labelled text again. Several browsers (annotators) label at once and never get the
same text, but with ``--overlap``, which gives a share of texts to a second annotator and reports
Cohen's kappa. "Adapt now" runs ``finetune --from MODEL --data OUTPUT`` in the background, shows its
before/after report, and the adapted model ranks and suggests from then on (and after a restart).

Limits and the API key are ``serve``'s: with a key, open the URL printed at start (the key travels in
the page's address after '#', never to the server in it, and the page sends it with every call).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Literal

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.serving.config import HttpConfig

log = logging.getLogger("sentiment_tf.label")


@dataclasses.dataclass
class LabelConfig:
    """What to label, where the labels go, and how texts are chosen."""

    model: str = option("Export that ranks and suggests (a version directory, or a base directory: its newest "
                        "version).", default="")
    unlabelled: str = option("Texts to label: CSV/TSV/JSON lines/Excel (column --text-col) or .txt, one per line.",
                             default="")
    output: str = option("Labels CSV, written at every label (text,label,annotator,time,suggestion,...); an "
                         "existing one is continued.", default="labels.csv")
    text_col: str = option("Text column of --unlabelled.", default="text")
    label_col: str = option("Rows of --unlabelled where this column is filled are already labelled: not shown.",
                            default="label")
    budget: int = option("Labels you plan to give (the progress bar's end; labelling may go past it).", at_least=1,
                         default=500)
    strategy: Literal["random", "uncertainty", "diverse", "hybrid"] = option(
        "Which text next: random | uncertainty | diverse | hybrid (BADGE), as in select.", default="hybrid")
    uncertainty: Literal["margin", "entropy"] = option("Uncertainty measure for --strategy uncertainty.",
                                                       default="margin")
    overlap: float = option("Share of texts also given to a second annotator, for the agreement figure "
                            "(Cohen's kappa).", at_least=0, below=1, default=0.0)
    seed: int = option("Seed of the choice.", default=42)
    max_candidates: int = option("Rank at most this many texts of --unlabelled (a seeded sample beyond it).",
                                 at_least=1, default=100000)
    adapt: bool = option("Offer 'Adapt now' (finetune on the labels in a background process).", default=True)
    adapt_output: str = option("Where adapted models are exported (default: the model's directory + '-labelled').",
                               default="")
    run_dir: str = option("Each 'Adapt now' is a finetune run in a new directory under this one.", default="runs")
    finetune_args: str = option("More finetune options for 'Adapt now', as one string: --finetune-args='--epochs 5'.",
                                default="")
    lease_seconds: float = option("A page silent this long gives back the texts it holds.", above=0, default=600.0)
    explain: bool = option("Show each text's attributions (integrated gradients, computed while the text before is "
                           "read; --no-explain spares the CPU, e.g. for a large BERT).", default=True)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        config_lib.require(self, "model", "unlabelled")


@dataclasses.dataclass
class LabelHttpConfig(HttpConfig):
    port: int = option("Port.", at_least=0, at_most=65535, default=8600)
    api_key: str | None = option("Require this key on the page's API (the page itself and /healthz hold no data); "
                                 "open the URL printed at start, which carries it after '#'. Prefer --api-key-file "
                                 "or SENTIMENT_TF_API_KEY (a key on the command line is visible in ps).", default=None)


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("label", __doc__, LabelConfig, LabelHttpConfig)


def finetune_command(cfg: LabelConfig, source: Path) -> list[str]:
    """The finetune command line of 'Adapt now' (all but its ``--run-dir``), checked now, before any work."""
    from sentiment_tf import finetune
    from sentiment_tf.core.config import AdaptConfig, DataConfig, TrainConfig

    output = str(Path(cfg.adapt_output or f"{source}-labelled").resolve())  # absolute: restore() reads it back
    try:
        extra = shlex.split(cfg.finetune_args)
    except ValueError as err:
        raise UserError(f"--finetune-args: {err}") from None
    owned = {"--from", "--data", "--output", "--run-dir", "--text-col", "--label-col"} & {a.split("=")[0] for a in extra}
    if owned:
        raise UserError(f"--finetune-args: {', '.join(sorted(owned))} is set by label itself; leave it out")
    command = ["--from", str(source), "--data", str(Path(cfg.output).resolve()), "--output", output, "--text-col", "text", "--label-col",
               "label", *extra]
    parser = finetune.build_parser()

    def refuse(message: str) -> None:  # one line, not finetune's usage
        raise UserError(f"--finetune-args: {message}")

    parser.error = refuse  # type: ignore[method-assign]
    parse_configs(parser, [*command, "--run-dir", cfg.run_dir], (DataConfig, AdaptConfig, TrainConfig))
    atomic.check_writable(output, "--adapt-output", directory=True)
    atomic.check_writable(cfg.run_dir, "--run-dir", directory=True)
    return [sys.executable, "-m", "sentiment_tf.finetune", *command]


def main(argv: list[str] | None = None) -> int:
    (cfg, http), _ = parse_configs(build_parser(), argv, (LabelConfig, LabelHttpConfig))
    setup_logging(cfg.verbose)
    api_key = http.resolved_api_key()
    from sentiment_tf import select
    from sentiment_tf.export.versions import cleaning_lowercase, read_metadata, resolve_version_dir
    from sentiment_tf.labeling.store import LabelStore

    # 1. Everything a mistake could be in, before the port, the pool or the model is touched.
    atomic.check_writable(cfg.output, "--output")
    version_dir = resolve_version_dir(cfg.model)
    meta = read_metadata(version_dir)
    lowercase = cleaning_lowercase(meta)
    store = LabelStore(cfg.output, list(meta["labels"]), lowercase)  # an existing file: continued, or refused
    command = finetune_command(cfg, version_dir.parent if version_dir.name.isdigit() else version_dir) \
        if cfg.adapt else None
    select_cfg = select.SelectConfig(model=cfg.model, unlabelled=cfg.unlabelled, text_col=cfg.text_col,
                                     label_col=cfg.label_col, seed=cfg.seed, max_candidates=cfg.max_candidates)
    frame, _, counts = select.candidates(select_cfg, lowercase)
    texts = frame[cfg.text_col].astype(str).tolist()
    if not texts:
        raise UserError(f"--unlabelled {cfg.unlabelled}: no text to label ({counts['rows']} rows: {counts['empty']} "
                        f"with nothing to classify, {counts['labelled']} already labelled, {counts['duplicates']} "
                        "duplicates)")
    from sentiment_tf.serving.lifecycle import bind

    sock = bind(http.host, http.port)

    # 2. The model scores the pool; the adapted one if an earlier run of this page made one.
    import uvicorn

    from sentiment_tf.labeling.adapt_job import AdaptJob
    from sentiment_tf.labeling.app import create_app
    from sentiment_tf.labeling.session import LabelSession, score_pool
    from sentiment_tf.serving.lifecycle import connections_allowed
    from sentiment_tf.serving.limits import RequestLimits, protocol_with_timeout

    job = AdaptJob(command, Path(cfg.run_dir), lambda v: session.use_model(score_pool(v, texts, cfg.strategy))) \
        if command else None
    ranking = (job.restore(Path(cfg.output)) if job else None) or version_dir
    log.info("%d texts to choose from; scoring them with %s", len(texts), ranking)
    session = LabelSession(texts, store, score_pool(ranking, texts, cfg.strategy), cfg.strategy, cfg.uncertainty,
                           cfg.seed, cfg.overlap, cfg.lease_seconds, cfg.explain)
    session.adaptation = job

    # 3. Serve the page, with serve's limits.
    app = RequestLimits(create_app(session, cfg.budget), http.max_body_bytes, http.timeout_request, api_key,
                        public_paths=("/", "/healthz"))
    config = uvicorn.Config(app, log_level="debug" if cfg.verbose else "warning",
                            http=protocol_with_timeout(http.timeout_request, connections_allowed(http.limit_connections)),
                            timeout_keep_alive=http.timeout_keep_alive, timeout_graceful_shutdown=5)
    progress = session.progress()
    url = f"http://{http.host}:{sock.getsockname()[1]}/" + (f"#key={api_key}" if api_key else "")
    print(f"labelling {len(texts)} texts ({progress['labelled']} labelled in {cfg.output}) with {session.scored.name}: "
          f"open {url}", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if session.adaptation is not None:
            session.adaptation.stop()
    # Every label is on disk. Exiting normally would wait for an attribution still computing in a thread
    # and for TensorFlow's teardown.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


cli = entry_point(main)


if __name__ == "__main__":
    cli()
