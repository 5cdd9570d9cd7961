"""Training plumbing shared by both model families: run directories, callbacks, devices.

Functions take the Keras flavour's ``callbacks`` module as an argument, so the Keras 3 LSTM path
and the tf-keras BERT path use the same code without importing each other's Keras.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
BEST_CHECKPOINT = "checkpoints/best.keras"
BEST_WEIGHTS = "checkpoints/best.weights.h5"


def new_run_dir(model: str, run_dir: str | None) -> Path:
    """A fresh run directory: the one asked for (must not hold an earlier run) or runs/<model>-<time>."""
    from sentiment_tf.errors import UserError

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


def standard_callbacks(callbacks: ModuleType, run_dir: Path, patience: int, extra: list | None = None,
                       weights_only: bool = False) -> list:
    """Early stopping (best weights restored), best checkpoint, TensorBoard, and a per-epoch backup
    that ``--resume`` continues from after an interruption.

    ``weights_only`` checkpoints weights (``best.weights.h5``): Hugging Face's subclassed TF models
    do not serialise to the ``.keras`` format; their architecture comes from the checkpoint config.
    """
    best = run_dir / (BEST_WEIGHTS if weights_only else BEST_CHECKPOINT)
    best.parent.mkdir(parents=True, exist_ok=True)
    return [
        callbacks.BackupAndRestore(backup_dir=str(run_dir / BACKUP_DIR)),
        callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1),
        callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True,
                                  save_weights_only=weights_only),
        callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")),
        *(extra or []),
    ]


def remove_backup(run_dir: Path) -> None:
    """Deletes the resume backup once training finished (tf-keras' BackupAndRestore leaves its
    directory behind; Keras 3 removes it itself)."""
    import shutil

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
