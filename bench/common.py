"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import time

import numpy as np


def epoch_timer(keras):
    """A Keras callback recording each epoch's training time: from the epoch's start to the end of
    its last training batch. What Keras does after that (tearing down iterators, validation,
    checkpoints) is excluded for every model alike."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = self._last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(self._last - self._start)

    return EpochTimer()


def samples_per_s(n: int, times: list[float]) -> float:
    # The fastest epoch after the first (which includes tracing): on a shared machine, other load
    # only ever makes an epoch slower, so the minimum is the least noisy estimate.
    steady = times[1:] or times
    return n / float(np.min(steady))
