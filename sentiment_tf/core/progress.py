"""Progress of long per-text work (segmentation, tokenisation, file prediction): a tqdm bar when
stderr is a terminal, else a log line every ``LOG_EVERY_SECONDS`` (and one at the end)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("sentiment_tf.core.progress")

T = TypeVar("T")
MIN_TEXTS = 5000  # below this the work takes a second or two: no progress shown
LOG_EVERY_SECONDS = 10.0


def progress(items: Iterable[T], total: int, what: str, per_item: int = 1) -> Iterator[T]:
    """Yields ``items`` (each standing for ``per_item`` of ``total`` texts), showing how far ``what``
    ("segmenting", ...) has got."""
    if total < MIN_TEXTS:
        yield from items
        return
    bar = None
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=what, unit=" texts", leave=False, mininterval=0.5)
    start = last = time.monotonic()
    done = 0
    try:
        for item in items:
            yield item
            step = min(per_item, total - done)
            done += step
            if bar is not None:
                bar.update(step)
                continue
            now = time.monotonic()
            if now - last >= LOG_EVERY_SECONDS and done < total:
                last = now
                log.info("%s: %d/%d texts (%.0f%%), %.0f s", what, done, total, 100 * done / total, now - start)
    finally:
        if bar is not None:
            bar.close()
    log.info("%s: %d texts in %.1f s", what, done, time.monotonic() - start)
