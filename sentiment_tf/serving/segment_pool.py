"""Segmentation in worker processes for the service (jieba is pure Python: threads share one GIL).

This module imports no TensorFlow, so spawned workers start light; each worker exits with its parent.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from sentiment_tf.models.lstm.preprocessor import Tokenizer

_WORKER_TOKENIZER: Tokenizer | None = None


def _init_segment_worker(mode: str, hmm: bool, lowercase: bool, user_dict: str | None,
                         stopwords: str | None) -> None:
    global _WORKER_TOKENIZER
    _exit_with_parent()
    _WORKER_TOKENIZER = Tokenizer(mode=mode, hmm=hmm, lowercase=lowercase, user_dict=user_dict, stopwords=stopwords)
    _WORKER_TOKENIZER.segment(["预热"])  # load the dictionary now, not on the first request


def _exit_with_parent() -> None:
    """Ends this worker if the server process dies without shutting the pool down (e.g. SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def segment_texts(texts: list[str]) -> list[str]:
    assert _WORKER_TOKENIZER is not None
    return _WORKER_TOKENIZER.segment(texts)


def segment_pool(tokenizer: Tokenizer, workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers segment exactly like ``tokenizer`` (``pool.submit(segment_texts, …)``)."""
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_segment_worker,
        initargs=(tokenizer.mode, tokenizer.hmm, tokenizer.lowercase, tokenizer.user_dict, tokenizer.stopwords_path))

