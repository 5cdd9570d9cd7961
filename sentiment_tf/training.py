"""Training plumbing shared by both model families: run directories, callbacks, devices.

Functions take the Keras flavour's ``callbacks`` module as an argument, so the Keras 3 LSTM path
and the tf-keras BERT path use the same code without importing each other's Keras.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sentiment_tf import atomic
from sentiment_tf.errors import UserError

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
BEST_CHECKPOINT = "checkpoints/best.keras"
BEST_WEIGHTS = "checkpoints/best.weights.h5"


def new_run_dir(model: str, run_dir: str | None) -> Path:
    """A fresh run directory: the one asked for (must not hold an earlier run) or runs/<model>-<time>."""
    if run_dir:
        path = Path(run_dir)
        if path.exists() and any(path.iterdir()):
            raise UserError(f"--run-dir {path} already holds a run; choose a new directory, or continue it "
                            f"with --resume {path}")
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{model}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = Path("runs") / f"{model}-{stamp}-{n}"
    path.mkdir(parents=True, exist_ok=True)
    return path


_EPOCH_OBSERVERS: list[Callable[[int, dict], None]] = []


@contextlib.contextmanager
def observe_epochs(observer: Callable[[int, dict], None]) -> Iterator[None]:
    """Calls ``observer(epoch, logs)`` after every epoch of the fits inside the block, in either
    Keras flavour (``tune`` reports validation accuracy to its pruner this way); what it raises ends the fit."""
    _EPOCH_OBSERVERS.append(observer)
    try:
        yield
    finally:
        _EPOCH_OBSERVERS.remove(observer)


def standard_callbacks(callbacks: ModuleType, run_dir: Path, patience: int, extra: list | None = None,
                       weights_only: bool = False) -> list:
    """Early stopping (best weights restored), best checkpoint, TensorBoard, and a per-epoch backup
    that ``--resume`` continues from after an interruption, exactly as if never interrupted.

    ``weights_only`` checkpoints weights (``best.weights.h5``): Hugging Face's subclassed TF models
    do not serialise to the ``.keras`` format; their architecture comes from the checkpoint config.
    """
    best = run_dir / (BEST_WEIGHTS if weights_only else BEST_CHECKPOINT)
    best.parent.mkdir(parents=True, exist_ok=True)
    early = callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1)
    checkpoint = callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True,
                                           save_weights_only=weights_only)
    return [
        # BackupAndRestore keeps weights and optimizer; RunState (after the callbacks it saves) the rest.
        callbacks.BackupAndRestore(backup_dir=str(run_dir / BACKUP_DIR)),
        early,
        checkpoint,
        run_state(callbacks, run_dir / BACKUP_DIR, early, checkpoint),
        callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")),
        *(extra or []),
        *(callbacks.LambdaCallback(on_epoch_end=observer) for observer in _EPOCH_OBSERVERS),
    ]


RUN_STATE = "run_state.json"  # in BACKUP_DIR, beside the weights BackupAndRestore keeps
BEST_WEIGHTS_STATE = "early_stopping_best.npz"


def epochs_done(run_dir: Path) -> int:
    """Epochs an interrupted run finished (0 for a new run): where ``--resume`` continues, and so the
    shuffling pass its training batches start from."""
    path = run_dir / BACKUP_DIR / RUN_STATE
    return int(json.loads(path.read_text(encoding="utf-8"))["epochs"]) if path.is_file() else 0


def epochs_to_run(run_dir: Path, epochs: int) -> int:
    """``model.fit``'s ``epochs``: a run interrupted right after early stopping ended it has none left
    (otherwise its resume would train one epoch more than the uninterrupted run)."""
    path = run_dir / BACKUP_DIR / RUN_STATE
    if not path.is_file():
        return epochs
    state = json.loads(path.read_text(encoding="utf-8"))
    return int(state["epochs"]) if state["early_stopping"]["stopped_epoch"] else epochs


def fitted_history(callbacks_list: list) -> dict[str, list[float]]:
    """Every epoch's logs from :func:`standard_callbacks`' run, epochs before an interruption included."""
    return next(c.history for c in callbacks_list if getattr(c, "is_run_state", False))


def _rng_states(model: Any, create: bool = False) -> list:
    """The variables holding dropout's random state: Keras 3 layers' seed generators, and tf-keras
    layers' ``tf.random.Generator`` (made on first use; ``create`` makes them now)."""
    states = []
    for layer in model._flatten_layers() if hasattr(model, "_flatten_layers") else []:
        states += [sg.state for sg in getattr(layer, "_seed_generators", [])]
        rng = getattr(layer, "_random_generator", None)
        if rng is not None and getattr(rng, "_rng_type", None) == "stateful":
            if create:
                rng._maybe_init()
            if getattr(rng, "_generator", None) is not None:
                states.append(rng._generator.state)
    return states


def run_state(callbacks: ModuleType, backup_dir: Path, early: Any, checkpoint: Any) -> Any:
    """A callback that saves, each epoch, what BackupAndRestore does not — the history so far, early
    stopping's and the best checkpoint's progress (best weights included) and the dropout seed states —
    and restores it when a run resumes."""
    class RunState(callbacks.Callback):
        is_run_state = True

        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_train_begin(self, logs: dict | None = None) -> None:
            path = backup_dir / RUN_STATE
            if not path.is_file():
                return
            state = json.loads(path.read_text(encoding="utf-8"))
            self.history = state["history"]
            for name, value in state["early_stopping"].items():
                setattr(early, name, value)
            checkpoint.best = state["checkpoint_best"]
            if (backup_dir / BEST_WEIGHTS_STATE).is_file():
                with np.load(backup_dir / BEST_WEIGHTS_STATE) as saved:
                    early.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]
            with self.model.distribute_strategy.scope():
                rng_states = _rng_states(self.model, create=True)
            if state["early_stopping"]["stopped_epoch"] and early.best_weights is not None:
                self.model.set_weights(early.best_weights)  # what early stopping restored when it ended the run
            if len(rng_states) == len(state["rng_states"]):
                for var, value in zip(rng_states, state["rng_states"]):
                    var.assign(np.asarray(value, dtype=np.asarray(var).dtype))
            else:
                log.warning("dropout random state not restored (%d generators saved, %d in the model): the "
                            "resumed run's dropout masks differ from an uninterrupted run's",
                            len(state["rng_states"]), len(rng_states))
            log.info("resumed after epoch %d (best so far: epoch %d)", state["epochs"], early.best_epoch + 1)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            if early.best_weights is not None and early.best_epoch == epoch:
                buf = io.BytesIO()
                np.savez(buf, **{f"w{i}": w for i, w in enumerate(early.best_weights)})
                atomic.write_bytes(backup_dir / BEST_WEIGHTS_STATE, buf.getvalue())
            state = {"epochs": epoch + 1, "history": self.history,
                     "early_stopping": {"wait": int(early.wait), "stopped_epoch": int(early.stopped_epoch),
                                        "best": None if early.best is None else float(early.best),
                                        "best_epoch": int(early.best_epoch)},
                     "checkpoint_best": float(checkpoint.best),
                     "rng_states": [np.asarray(v).tolist() for v in _rng_states(self.model)]}
            atomic.write_json(backup_dir / RUN_STATE, state)

    return RunState()


@contextlib.contextmanager
def precision_policy(mixed_precision: ModuleType, enabled: bool) -> Iterator[None]:
    """float16 compute for the layers built inside (``mixed_precision`` is the Keras flavour's module);
    the global policy is put back afterwards, so later trainings in the process are unaffected."""
    if not enabled:
        yield
        return
    previous = mixed_precision.global_policy()
    mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        mixed_precision.set_global_policy(previous)


def remove_backup(run_dir: Path) -> None:
    """Deletes the resume backup once training finished (tf-keras' BackupAndRestore leaves its
    directory behind; Keras 3 removes it itself)."""
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)


def balanced_class_weight(y: np.ndarray, num_classes: int) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=y)
    return {i: float(w) for i, w in enumerate(weights)}


def distribution_strategy(tf: ModuleType) -> Any:
    """MirroredStrategy over all GPUs when there are several, else the default (one device)."""
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    log.info("training on %s", "GPU" if gpus else "CPU")
    return tf.distribute.get_strategy()


def history_dict(history: Any) -> dict[str, list[float]]:
    return {k: [float(v) for v in vs] for k, vs in (getattr(history, "history", None) or {}).items()}
