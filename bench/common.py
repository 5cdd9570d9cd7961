"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import time

import numpy as np


def epoch_timer(keras):
    """A Keras callback recording the training time of each epoch (validation excluded)."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._stopped = time.perf_counter(), False

        def on_test_begin(self, logs=None):  # validation begins: the epoch's training is over
            self._stop()

        def on_epoch_end(self, epoch, logs=None):
            self._stop()

        def _stop(self):
            if not self._stopped:
                self.times.append(time.perf_counter() - self._start)
                self._stopped = True

    return EpochTimer()


def samples_per_s(n: int, times: list[float]) -> float:
    # The fastest epoch after the first (which includes tracing): on a shared machine, other load
    # only ever makes an epoch slower, so the minimum is the least noisy estimate.
    steady = times[1:] or times
    return n / float(np.min(steady))
