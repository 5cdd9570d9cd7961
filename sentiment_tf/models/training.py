"""Training plumbing shared by both model families: run directories, callbacks, devices.

Functions take the Keras flavour's ``callbacks`` module as an argument, so the Keras 3 LSTM path
and the tf-keras BERT path use the same code without importing each other's Keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sentiment_tf.core import atomic, config
from sentiment_tf.core.errors import UserError

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
BEST_CHECKPOINT = "checkpoints/best.keras"
BEST_WEIGHTS = "checkpoints/best.weights.h5"


WORKER_TEMP = "workertemp_"  # a non-chief worker's directory inside the run directory, as in TF's guide


@dataclasses.dataclass(frozen=True)
class Role:
    """This process's place in a ``TF_CONFIG`` cluster: one worker when there is none."""
    workers: int = 1
    task_type: str = "worker"
    task_id: int = 0
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0 and not self.has_chief)

    def local(self, run_dir: str | Path) -> Path:
        """Where this process writes what belongs in ``run_dir``: the chief writes the run directory itself,
        every other worker its own ``workertemp_<n>`` inside it (kept until the run ends, for ``--resume``)."""
        return Path(run_dir) if self.is_chief else Path(run_dir) / f"{WORKER_TEMP}{self.task_type}{self.task_id}"


@functools.cache
def role() -> Role:
    """The ``TF_CONFIG`` environment variable, parsed and checked (a one-line error when it is malformed)."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return Role()
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        task_type, task_id = str(task["type"]), int(task["index"])
        jobs = {name: list(addresses) for name, addresses in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"TF_CONFIG is not valid JSON of the form {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
                        f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}} ({err})") from None
    unsupported = sorted(set(jobs) - {"chief", "worker"})
    if unsupported:
        raise UserError(f"TF_CONFIG: job {unsupported[0]!r} is not supported; MultiWorkerMirroredStrategy takes "
                        "'worker' (and an optional 'chief') jobs only")
    if task_type not in jobs or not 0 <= task_id < len(jobs[task_type]):
        raise UserError(f"TF_CONFIG: task {task_type}:{task_id} is not in its cluster "
                        f"({', '.join(f'{k}: {len(v)}' for k, v in jobs.items())})")
    return Role(sum(len(v) for v in jobs.values()), task_type, task_id, has_chief=bool(jobs.get("chief")))


def resumed_values(run_dir: str, prog: str) -> dict[str, Any]:
    """The saved options of an interrupted run, pointed back at its run directory (for ``--resume``).
    A non-chief worker of a cluster reads its own copy (written in its directory inside ``run_dir``)."""
    saved = role().local(run_dir) / "config.json"
    if not saved.is_file():
        raise UserError(f"--resume {run_dir}: no config.json there; pass a run directory written by "
                        f"`python -m sentiment_tf.{prog}`")
    values = config.load_config_file(str(saved))
    values.update(resume=run_dir, run_dir=run_dir)
    return values


def new_run_dir(model: str, run_dir: str | None) -> Path:
    """A fresh run directory: the one asked for (must not hold an earlier run) or runs/<model>-<time>.
    On a cluster, a non-chief worker gets its own directory inside (:meth:`Role.local`)."""
    if run_dir and not role().is_chief:
        path = role().local(run_dir)
        if path.exists() and any(path.iterdir()):
            raise UserError(f"--run-dir {run_dir} already holds a run of this worker; choose a new directory, "
                            f"or continue it with --resume {run_dir}")
        path.mkdir(parents=True, exist_ok=True)
        return path
    if run_dir:
        path = Path(run_dir)
        if path.exists() and any(not p.name.startswith(WORKER_TEMP) for p in path.iterdir()):
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
        callbacks.BackupAndRestore(backup_dir=str(backup_dir(callbacks, run_dir))),
        early,
        checkpoint,
        run_state(callbacks, run_dir / BACKUP_DIR, early, checkpoint),
        callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")),
        *(extra or []),
        *(callbacks.LambdaCallback(on_epoch_end=observer) for observer in _EPOCH_OBSERVERS),
    ]


def backup_dir(callbacks: ModuleType, run_dir: Path) -> Path:
    """BackupAndRestore's directory. On a cluster, Keras 3's callback knows nothing of workers, so each
    keeps its own backup (all alike); tf-keras' writes the chief's only and every worker restores from
    it, so all name the chief's (a shared filesystem, as tf-keras requires)."""
    if "tf_keras" in callbacks.__name__ and not role().is_chief:
        return run_dir.parent / BACKUP_DIR  # run_dir is this worker's directory inside the chief's
    return run_dir / BACKUP_DIR


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
            state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            check_workers_resume_together(self.model.distribute_strategy, state["epochs"] if state else 0)
            if state is None:
                return
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


def check_workers_resume_together(strategy: Any, epochs: int) -> None:
    """On a cluster, every worker must continue from the same epoch's backup (each keeps its own); a worker
    killed while writing one would otherwise train out of step with the others."""
    if role().workers == 1:
        return
    import tensorflow as tf

    everyone = strategy.gather(strategy.run(lambda: tf.constant([epochs], tf.int64)), axis=0).numpy().tolist()
    if len(set(everyone)) > 1:
        raise UserError(f"the workers' backups are from different epochs ({everyone}); start the run again "
                        "with a new --run-dir")


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


@functools.cache
def distribution_strategy(tf: ModuleType) -> Any:
    """MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several workers, MirroredStrategy over all
    GPUs when there are several, else the default (one device). Made once per process: the multi-worker
    strategy must exist before TensorFlow runs its first op, so commands call this early."""
    this = role()
    if this.workers > 1:
        log.info("training on %d workers with MultiWorkerMirroredStrategy (this is %s %d%s)", this.workers,
                 this.task_type, this.task_id, ", the chief" if this.is_chief else "")
        return keras_strategy(tf, "MultiWorkerMirroredStrategy")()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs with MirroredStrategy", len(gpus))
        return keras_strategy(tf, "MirroredStrategy")()
    log.info("training on %s", "GPU" if gpus else "CPU")
    return tf.distribute.get_strategy()


@functools.cache
def keras_strategy(tf: ModuleType, name: str) -> type:
    """``tf.distribute.<name>`` with ``reduce`` taking what Keras 3's ``fit``, ``evaluate`` and ``predict``
    pass it (keras-team/keras#20585): a nested data batch, of which Keras wants only the structure and
    shapes (the replicas' batches may differ in size, so this replica's own is returned: a mean of token
    ids means nothing), and ``axis=0`` on scalar logs, which means the mean over replicas."""
    base = getattr(tf.distribute, name)

    class Strategy(base):

        def reduce(self, reduce_op: Any, value: Any, axis: int | None) -> Any:
            mean = str(getattr(reduce_op, "value", reduce_op)).upper() == "MEAN"

            def leaf(v: Any) -> Any:
                distributed = isinstance(v, tf.distribute.DistributedValues)
                local = tf.convert_to_tensor(self.experimental_local_results(v)[0] if distributed else v)
                if distributed and mean and axis is None and not local.dtype.is_floating:
                    return local
                return super(Strategy, self).reduce(reduce_op, v, axis if local.shape.rank else None)

            return tf.nest.map_structure(leaf, value)

    Strategy.__name__ = Strategy.__qualname__ = name
    return Strategy


def log_batch(strategy: Any, batch_size: int, learning_rate: float) -> None:
    """States how a global batch divides over the replicas (the learning rate is never rescaled)."""
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        log.info("global batch %d = %d replicas × %s; learning rate %g (not scaled by the replicas)", batch_size,
                 replicas, f"{batch_size // replicas}" if batch_size % replicas == 0 else f"~{batch_size / replicas:.1f}",
                 learning_rate)


def shard_by_data(tf: ModuleType, dataset: Any) -> Any:
    """Workers each take their share of every global batch (``AutoShardPolicy.DATA``): the datasets are
    built from tensors in memory, with no files to divide."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def start_cluster(run_dir: str | None, resume: str | None) -> None:
    """Checks ``TF_CONFIG`` and, on a cluster, that the workers share one named run directory (each
    picks runs/<model>-<time> at its own second otherwise); then makes the strategy now, before any
    TensorFlow op."""
    workers = role().workers
    if workers > 1:
        if not (run_dir or resume):
            raise UserError(f"TF_CONFIG names {workers} workers: give every worker the same --run-dir")
        import tensorflow as tf

        distribution_strategy(tf)


def output_for(output: str | Path, run_dir: Path) -> Path:
    """Where this process writes ``--output``: there for the chief; a directory inside its own (deleted
    with it) for the other workers, which must save too, as saving may run collective ops (TF's guide)."""
    return Path(output) if role().is_chief else run_dir / "output"


def log_weights_digest(model: Any) -> None:
    """On a cluster, each worker logs a digest of its trained weights: replicas that stayed in step agree
    bit for bit (a test compares them)."""
    if role().workers > 1:
        import hashlib

        digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights()))
        log.info("trained weights sha256 %s (%s %d)", digest.hexdigest(), role().task_type, role().task_id)


def finish_worker(run_dir: Path, chief_writes: str) -> bool:
    """On a non-chief worker, once the run is complete: removes its directory (the chief's run directory
    and export are the run's), says so, and returns True (the command ends there)."""
    if role().is_chief:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"worker {role().task_id} done; the chief writes {chief_writes}")
    return True


def history_dict(history: Any) -> dict[str, list[float]]:
    return {k: [float(v) for v in vs] for k, vs in (getattr(history, "history", None) or {}).items()}
