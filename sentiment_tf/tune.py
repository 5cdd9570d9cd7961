"""Search a model's hyper-parameters on the validation split and write the best as a config file.

    python -m sentiment_tf.tune --data reviews.csv --trials 30 --timeout 3600
    python -m sentiment_tf.train --config runs/tune-<time>/best.yaml        # train with the best settings
    python -m sentiment_tf.tune --resume runs/tune-<time> [--trials 50]      # continue (or extend) a search

Optuna's TPE sampler proposes each trial; a trial trains exactly as ``train`` does (early stopping on
validation loss) and scores the validation split, never the test split. Trials whose validation
accuracy after an epoch falls below the median of earlier trials at that epoch are pruned. Searched:
``--model lstm`` embedding size, units, dropout, learning rate, batch size, tokenizer mode and pooling;
``--model bert`` learning rate, epochs and maximum length. An option given on the command line (or in
``--config``) is fixed at that value instead of searched. The first trial is ``train``'s defaults. The study lives in OUTPUT/study.db, so
an interrupted search resumes with the same trials it would have run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import fcntl
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_tf.core import atomic
from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import CONFIG_CLASSES, build_configs, option, to_dict
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.splits import load_splits
from sentiment_tf.models import family, training

log = logging.getLogger("sentiment_tf.tune")

# name → (kind, *arguments of the Optuna suggestion). Ranges centre on the families' recipes.
SPACES: dict[str, dict[str, tuple]] = {
    "lstm": {
        "embedding_dim": ("categorical", [64, 128, 256]),
        "rnn_units": ("categorical", [32, 64, 128]),
        "dropout": ("float", 0.1, 0.5),
        "learning_rate": ("log", 5e-4, 5e-3),
        "batch_size": ("categorical", [32, 64, 128]),
        "tokenizer": ("categorical", ["word", "char"]),
        "pooling": ("categorical", ["max", "last"]),
    },
    "bert": {
        "learning_rate": ("log", 1e-5, 1e-4),
        "epochs": ("categorical", [2, 3, 4]),
        "max_length": ("categorical", [64, 128, 256]),
    },
}
STARTUP_TRIALS = 5  # random proposals before TPE models the results (and before pruning starts: 3)
# Train options that make no sense per trial: trials are not exported and have their own directories.
NOT_TUNE_OPTIONS = ("output", "run_dir", "resume", "allow_other_data")


@dataclasses.dataclass
class TuneConfig:
    """The search."""

    trials: int = option("Trials in the study (a resumed study counts the ones it already ran).", at_least=1,
                         default=20)
    timeout: float | None = option("Start no new trial after this many seconds.", above=0, default=None)
    output: str | None = option("Study directory: study.db, trials/, trials.csv, best.yaml (default: "
                                "runs/tune-<time>).", default=None)
    resume: str | None = option("Continue the study in this directory with its saved options.", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sentiment_tf.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON or YAML file of options (command-line options win).")
    config_lib.add_dataclass_arguments(parser, TuneConfig)
    for cls in CONFIG_CLASSES:
        config_lib.add_dataclass_arguments(parser, cls, skip=NOT_TUNE_OPTIONS)
    return parser


def parse_args(argv: list[str] | None) -> tuple[TuneConfig, dict[str, Any]]:
    """The search settings and the fixed train options (as given: a flat dict)."""
    ns = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(ns).items() if k != "config"}
    values = config_lib.load_config_file(ns.config) if ns.config else {}
    values.update(given)
    if values.get("resume"):
        saved = Path(values["resume"]) / "tune.json"
        if not saved.is_file():
            raise UserError(f"--resume {values['resume']}: no tune.json there; pass a directory written by "
                            "`python -m sentiment_tf.tune`")
        stored = config_lib.load_config_file(str(saved))
        # A resumed study keeps its data and fixed options; only the budget may change.
        budget = {k: values[k] for k in ("trials", "timeout") if k in values}
        values = {**stored, **budget, "resume": values["resume"], "output": values["resume"]}
    tune_names = {f.name for f in dataclasses.fields(TuneConfig)}
    (tune_cfg,) = build_configs({k: v for k, v in values.items() if k in tune_names}, (TuneConfig,))
    fixed = {k: v for k, v in values.items() if k not in tune_names}
    if any(k in NOT_TUNE_OPTIONS for k in fixed):
        raise UserError(f"{', '.join(sorted(set(fixed) & set(NOT_TUNE_OPTIONS)))}: not tune options (trials are "
                        "not exported; --output names the study directory)")
    build_configs(fixed)  # every fixed value is checked now, before any work
    return tune_cfg, fixed


def suggest(trial: Any, name: str, spec: tuple) -> Any:
    kind, *args = spec
    if kind == "categorical":
        return trial.suggest_categorical(name, args[0])
    return trial.suggest_float(name, args[0], args[1], log=kind == "log")


def study_dir(tune_cfg: TuneConfig) -> Path:
    if tune_cfg.output:
        path = Path(tune_cfg.output)
        if not tune_cfg.resume and (path / "study.db").exists():
            raise UserError(f"--output {path} already holds a study; continue it with --resume {path} or choose "
                            "a new directory")
        return path
    return Path("runs") / f"tune-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


class Search:
    """One study: its storage, the fixed data and options, and the objective Optuna calls."""

    def __init__(self, tune_cfg: TuneConfig, fixed: dict[str, Any]):
        """Checks the options and loads the data: everything that can fail on the user's input, before any write."""
        import optuna

        self.optuna = optuna
        self.cfg, self.fixed = tune_cfg, fixed
        data_cfg, tok_cfg, model_cfg, _ = build_configs(fixed)
        self.model = model_cfg.model
        self.space = {k: v for k, v in SPACES[self.model].items() if k not in fixed}
        if not self.space:
            raise UserError(f"every searched option of --model {self.model} is fixed by an option; nothing to tune")
        self.family = family.get(self.model)
        self.data_cfg, _, _ = self.family.prepare(data_cfg.resolved(), tok_cfg, model_cfg, "lowercase" in fixed)
        for name in self.set_by_checkpoint():
            log.info("not searching %s: --pretrained %s sets it", name, model_cfg.pretrained)
            del self.space[name]
        if not self.space:
            raise UserError(f"--pretrained {model_cfg.pretrained} sets every searched option; nothing to tune")
        self.splits = load_splits(self.data_cfg)

    def prepared(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every option's value once the family has applied what its checkpoint implies."""
        data_cfg, tok_cfg, model_cfg, train_cfg = build_configs(values)
        configs = (*self.family.prepare(data_cfg.resolved(), tok_cfg, model_cfg, "lowercase" in values), train_cfg)
        return {k: v for cfg in configs for k, v in dataclasses.asdict(cfg).items()}

    def set_by_checkpoint(self) -> list[str]:
        """Searched options a pretrained model decides (an LSTM language model: tokenizer and shapes):
        set to another value, they come back unchanged."""
        base = self.prepared(self.fixed)
        probe = {}
        for name, (kind, *args) in self.space.items():
            options = args[0] if kind == "categorical" else args[:2]
            probe[name] = next((v for v in options if v != base[name]), options[0])
        changed = self.prepared({**self.fixed, **probe})
        return [name for name in probe if changed[name] != probe[name]]

    def open(self, directory: Path) -> None:
        self.dir = directory
        self.storage = self.optuna.storages.RDBStorage(f"sqlite:///{(directory / 'study.db').resolve()}")
        self.study = self.optuna.create_study(
            study_name="sentiment_tf", storage=self.storage, direction="maximize", load_if_exists=True,
            pruner=self.optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
        if not self.study.trials:  # the first trial is train's defaults: the table shows what searching gains
            self.study.enqueue_trial(self.defaults())

    def defaults(self) -> dict[str, Any]:
        configs = build_configs(self.fixed)
        configs[-1] = family.train_config(configs[-1], self.model)
        values = {k: v for cfg in configs for k, v in dataclasses.asdict(cfg).items()}
        return {name: values[name] for name in self.space}

    def finished(self) -> list:
        states = (self.optuna.trial.TrialState.COMPLETE, self.optuna.trial.TrialState.PRUNED)
        return self.study.get_trials(deepcopy=False, states=states)

    def recover_interrupted(self) -> None:
        """Trials a killed or interrupted search left running or failed run again, once, with the same parameters."""
        states = self.optuna.trial.TrialState
        requeued = set(self.study.user_attrs.get("requeued", []))
        for trial in self.study.get_trials(deepcopy=False, states=(states.RUNNING, states.FAIL)):
            if trial.number in requeued:
                continue
            if trial.state == states.RUNNING:  # its process is gone: we hold the study's lock
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                    self.storage.get_study_id_from_name("sentiment_tf"), trial.number)
                self.storage.set_trial_state_values(trial_id, states.FAIL)
            self.study.enqueue_trial(trial.params, skip_if_exists=False)
            requeued.add(trial.number)
            log.info("trial %d did not finish; it runs again", trial.number)
        self.study.set_user_attr("requeued", sorted(requeued))

    def objective(self, trial: Any) -> float:
        params = {name: suggest(trial, name, spec) for name, spec in self.space.items()}
        data_cfg, tok_cfg, model_cfg, train_cfg = build_configs({**self.fixed, **params})
        train_cfg = family.train_config(train_cfg, self.model)
        try:  # e.g. a maximum length beyond the checkpoint's positions
            _, tok_cfg, model_cfg = self.family.prepare(data_cfg.resolved(), tok_cfg, model_cfg,
                                                        "lowercase" in self.fixed)
        except UserError as err:
            raise self.optuna.TrialPruned(f"not possible: {err}") from None
        run_dir = self.dir / "trials" / f"{trial.number:03d}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        start = time.perf_counter()

        def report(epoch: int, logs: dict) -> None:
            trial.report(float(logs.get("val_accuracy", math.nan)), epoch)
            if trial.should_prune():
                raise self.optuna.TrialPruned(f"validation accuracy {logs.get('val_accuracy', math.nan):.4f} "
                                              f"after epoch {epoch + 1}")

        try:
            with training.observe_epochs(report):
                trained = self.family.fit(self.splits, tok_cfg, model_cfg, train_cfg, run_dir,
                                          lowercase=self.data_cfg.lowercase, seed=self.data_cfg.seed)
        finally:
            trial.set_user_attr("minutes", (time.perf_counter() - start) / 60)
            for name in ("checkpoints", training.BACKUP_DIR):  # trials are not exported
                shutil.rmtree(run_dir / name, ignore_errors=True)
        probs = trained.predict_proba(self.splits.val["text"].tolist())
        y = self.splits.val["y"].to_numpy()
        trial.set_user_attr("val_loss", float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1)))))
        trial.set_user_attr("epochs", len(trained.history.get("val_loss", [])))
        return float((probs.argmax(-1) == y).mean())

    def run(self) -> None:
        from tensorflow import errors as tf_errors

        start = time.perf_counter()
        while len(self.finished()) < self.cfg.trials:
            if self.cfg.timeout and time.perf_counter() - start > self.cfg.timeout:
                log.info("timeout: %.0f s passed, no new trial", self.cfg.timeout)
                break
            # Seeded by how many trials finished, so a resumed study proposes what the uninterrupted one would.
            self.study.sampler = self.optuna.samplers.TPESampler(seed=self.data_cfg.seed + len(self.finished()),
                                                                 n_startup_trials=STARTUP_TRIALS)
            # Out of memory fails one trial (e.g. a large batch), not the search.
            self.study.optimize(self.objective, n_trials=1, catch=(MemoryError, tf_errors.ResourceExhaustedError))
            last = self.study.trials[-1]
            value = f"{last.value:.4f}" if last.value is not None else "-"
            log.info("trial %d/%d %s: validation accuracy %s %s", len(self.finished()), self.cfg.trials,
                     last.state.name.lower(), value, last.params)
            self.write_results()

    def ranked(self) -> list:
        return sorted(self.finished(), key=lambda t: (t.state.name != "COMPLETE", -(t.value or 0), t.number))

    def write_results(self) -> None:
        import pandas as pd

        rows = [{"rank": i + 1, "trial": t.number, "state": t.state.name.lower(),
                 "val_accuracy": t.value if t.value is not None else max(t.intermediate_values.values(), default=None),
                 "val_loss": t.user_attrs.get("val_loss"), "epochs": t.user_attrs.get("epochs"),
                 "minutes": t.user_attrs.get("minutes"), **t.params} for i, t in enumerate(self.ranked())]
        atomic.write_text(self.dir / "trials.csv", pd.DataFrame(rows).to_csv(index=False))
        best = self.best()
        if best is not None:
            atomic.write_text(self.dir / "best.yaml", self.best_yaml(best))

    def best(self) -> Any:
        complete = [t for t in self.ranked() if t.state.name == "COMPLETE"]
        return complete[0] if complete else None

    def best_yaml(self, trial: Any) -> str:
        import yaml

        data_cfg, tok_cfg, model_cfg, train_cfg = build_configs({**self.fixed, **trial.params})
        train_cfg = family.train_config(train_cfg, self.model)
        configs = to_dict(data_cfg, tok_cfg, model_cfg, train_cfg)
        for name in NOT_TUNE_OPTIONS:
            configs["TrainConfig"].pop(name)
        # A model of its own: trained on the study's data, it must not become the newest version of another.
        configs["TrainConfig"]["output"] = f"saved_models/{self.dir.name}"
        header = (f"# sentiment_tf.tune: best of {len(self.finished())} trials — trial {trial.number}, validation "
                  f"accuracy {trial.value:.4f}\n# python -m sentiment_tf.train --config {self.dir / 'best.yaml'}\n")
        return header + yaml.safe_dump(configs, allow_unicode=True, sort_keys=False)

    def print_table(self) -> None:
        names = list(self.space)
        print(f"\n{len(self.finished())} trials, ranked by validation accuracy ({len(self.splits.val)} texts):")
        print(f"{'rank':>4} {'trial':>5} {'state':>8} {'val acc':>8} {'val loss':>8} {'epochs':>6} {'min':>5}  "
              + "  ".join(names))
        for i, t in enumerate(self.ranked()):
            acc = f"{t.value:.4f}" if t.value is not None else "-"
            loss = f"{t.user_attrs['val_loss']:.4f}" if "val_loss" in t.user_attrs else "-"
            params = "  ".join(f"{t.params[n]:.2g}" if isinstance(t.params.get(n), float) else str(t.params.get(n))
                               for n in names)
            print(f"{i + 1:>4} {t.number:>5} {t.state.name.lower():>8} {acc:>8} {loss:>8} "
                  f"{t.user_attrs.get('epochs', '-'):>6} {t.user_attrs.get('minutes', 0):>5.1f}  {params}")


def main(argv: list[str] | None = None) -> int:
    tune_cfg, fixed = parse_args(argv)
    setup_logging(bool(fixed.get("verbose")))
    directory = study_dir(tune_cfg)
    atomic.check_writable(directory, "--output", directory=True)
    import optuna

    optuna.logging.disable_default_handler()  # its warnings go through our logging, in our format
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from this module
    search = Search(tune_cfg, fixed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:  # held for the whole search
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{directory}: another tune is running on this study") from None
        if not tune_cfg.resume:
            atomic.write_json(directory / "tune.json", {**fixed, "trials": tune_cfg.trials,
                                                        "timeout": tune_cfg.timeout})
        search.open(directory)
        return search_and_report(search, tune_cfg, directory)


def search_and_report(search: Search, tune_cfg: TuneConfig, directory: Path) -> int:
    search.recover_interrupted()
    log.info("study %s: %d of %d trials done; searching %s", directory, len(search.finished()), tune_cfg.trials,
             ", ".join(search.space))
    try:
        search.run()
    except KeyboardInterrupt:
        print(f"\nsearch interrupted; continue it with: python -m sentiment_tf.tune --resume {directory}",
              file=sys.stderr)
        raise
    search.write_results()
    search.print_table()
    best = search.best()
    if best is None:
        raise UserError("no trial completed (all were pruned or timed out); raise --trials or --timeout")
    print(f"\nbest: trial {best.number}, validation accuracy {best.value:.4f}")
    print(f"table:  {directory / 'trials.csv'}")
    print(f"config: {directory / 'best.yaml'}")
    print(f"train:  python -m sentiment_tf.train --config {directory / 'best.yaml'}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
