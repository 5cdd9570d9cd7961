"""Who sees which text: the pool, the labels so far, the model that ranks and suggests, and every
browser's queue (what it shows now and the text after it, prepared while the person reads).

All state changes hold one lock and are cheap (a pick is one distance per pool text); the model's
work — scoring the pool after an adaptation, attributions — runs beside it, never under the lock.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_tf.evaluation import selection
from sentiment_tf.labeling.ranking import Ranker
from sentiment_tf.labeling.store import Label, LabelStore

log = logging.getLogger(__name__)

EXPLAIN_STEPS = 32  # integrated-gradients steps: enough for a highlight, a few times cheaper than explain's 50
EXPLAIN_OFF = {"tokens": [], "scores": [], "label": None, "off": True}  # what the page gets with --no-explain
PREPARED = 2  # texts queued per browser: the one shown and the next, explained while the person reads


class Refused(Exception):
    """A request that cannot be done as asked: answered ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class Scored:
    """One model's view of the pool."""

    name: str  # shown on the page and written with each label ("lstm/1", "lstm-labels/2")
    version_dir: Path
    predictor: Any
    probabilities: np.ndarray  # [pool, labels], calibrated
    embeddings: np.ndarray | None  # [pool, d] (diverse and hybrid)
    trained: Any = None  # the Keras model behind the export, for attributions (loaded on first use)


def model_name(version_dir: Path) -> str:
    return f"{version_dir.parent.name}/{version_dir.name}"


def score_pool(version_dir: Path, texts: list[str], strategy: str) -> Scored:
    """Loads the export at ``version_dir`` and scores every pool text (with features where the strategy
    needs them)."""
    from sentiment_tf.serving.predictor import Predictor

    predictor = Predictor.load(version_dir)
    if strategy in selection.NEEDS_EMBEDDINGS:
        embeddings, probs = predictor.embed(texts)
    else:
        embeddings, probs = None, predictor.predict(texts).probabilities
    return Scored(model_name(version_dir), version_dir, predictor, np.asarray(probs), embeddings)


@dataclasses.dataclass
class Browser:
    """One browser tab (its session id) and whom it labels for."""

    annotator: str
    queue: collections.deque = dataclasses.field(default_factory=collections.deque)  # pool indices; [0] is shown
    seen: float = dataclasses.field(default_factory=time.monotonic)


class LabelSession:
    """The labelling state behind the page.

    Args:
        texts: the candidate texts (``select``'s candidates: cleaned, de-duplicated, not yet labelled in the
            input), in input order.
        store: the labels so far; their texts are never shown again (but to a second annotator, with overlap).
        scored: the model that ranks and suggests.
        strategy, measure, seed: how texts are chosen (``select``'s options).
        overlap: the share of texts also given to a second annotator (for Cohen's kappa).
        lease_seconds: a browser silent this long gives its queued texts back.
        explain: compute each queued text's attributions (off: the page shows none, and no CPU goes to them).
    """

    def __init__(self, texts: list[str], store: LabelStore, scored: Scored, strategy: str = "hybrid",
                 measure: str = "margin", seed: int = 42, overlap: float = 0.0, lease_seconds: float = 600.0,
                 explain: bool = True):
        self.texts = texts
        self.keys = [store.key(t) for t in texts]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.store = store
        self.strategy, self.measure, self.seed = strategy, measure, seed
        self.overlap, self.lease_seconds, self.explain = overlap, lease_seconds, explain
        self.lock = threading.RLock()
        self.browsers: dict[str, Browser] = {}
        self.available = np.ones(len(texts), dtype=bool)
        self.skipped: set[int] = set()
        self.returned: collections.deque[int] = collections.deque()  # given back by a browser: shown first
        self.second: collections.deque[int] = collections.deque()  # labelled once, wanted twice (--overlap)
        self.shown_as_second: set[int] = set()
        for i in self._labelled_indices():
            self.available[i] = False
        for key, rows in store.by_text().items():
            if key in self.index and len(rows) == 1 and self.wants_second(key):
                self.second.append(self.index[key])
        self.scored = scored
        self.ranker = self._ranker(scored)
        self.explainer = ThreadPoolExecutor(1, thread_name_prefix="explain")
        self.explanations: dict[tuple[str, int], dict] = {}
        self.adaptation: Any = None  # the AdaptJob, set by the app

    # --- ranking ---------------------------------------------------------------------------------

    def _labelled_indices(self) -> list[int]:
        return [self.index[r.key] for r in self.store.rows if r.key in self.index]

    def _ranker(self, scored: Scored) -> Ranker:
        taken = np.flatnonzero(~self.available).tolist()  # sorted, each once
        return Ranker(self.strategy, scored.probabilities, scored.embeddings, taken, self.seed, self.measure)

    def use_model(self, scored: Scored) -> None:
        """Ranks and suggests with ``scored`` from now on (after an adaptation); the texts queued in browsers
        stay, everything after them is ranked anew."""
        before = self.available.copy()
        ranker = self._ranker(scored)  # outside the lock: the distances to every text taken so far
        with self.lock:
            for i in np.flatnonzero(before & ~self.available):  # taken while the new ranker was built
                ranker.take(int(i))
            self.scored, self.ranker = scored, ranker
        for b in list(self.browsers.values()):
            for i in list(b.queue):
                self._explain_later(i)

    def wants_second(self, key: str) -> bool:
        if self.overlap <= 0:
            return False
        digest = hashlib.blake2b(f"{self.seed}:{key}".encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2 ** 64 < self.overlap

    def _expire(self) -> None:
        now = time.monotonic()
        for sid, b in list(self.browsers.items()):
            if now - b.seen > self.lease_seconds:
                self._give_back(b)
                del self.browsers[sid]

    def _give_back(self, b: Browser) -> None:
        while b.queue:
            i = b.queue.pop()
            if i in self.shown_as_second:
                self.shown_as_second.discard(i)
                self.second.appendleft(i)
            else:
                self.available[i] = True
                self.returned.appendleft(i)

    def _pick_for(self, b: Browser) -> int | None:
        # a text another annotator labelled, for the agreement figure
        for i in list(self.second):
            if b.annotator not in self.store.annotators_of(self.keys[i]):
                self.second.remove(i)
                self.shown_as_second.add(i)
                return i
        while self.returned:
            i = self.returned.popleft()
            if self.available[i]:
                self.available[i] = False
                return i
        i = self.ranker.pick(self.available)
        if i is not None:
            self.available[i] = False
            self.ranker.take(i)
        return i

    def _fill(self, b: Browser) -> None:
        while len(b.queue) < PREPARED:
            i = self._pick_for(b)
            if i is None:
                return
            b.queue.append(i)
            self._explain_later(i)

    def _browser(self, session: str, annotator: str) -> Browser:
        self._expire()
        b = self.browsers.get(session)
        if b is None:
            b = self.browsers[session] = Browser(annotator)
        elif b.annotator != annotator:  # renamed in the page: the same texts, labelled under the new name
            b.annotator = annotator
        b.seen = time.monotonic()
        return b

    # --- what the page asks ------------------------------------------------------------------------

    def current(self, session: str, annotator: str) -> dict:
        """The text this browser shows (the same one until it is labelled, skipped or undone)."""
        with self.lock:
            b = self._browser(session, annotator)
            self._fill(b)
            return self._item(b)

    def label(self, session: str, annotator: str, index: int, label: str) -> dict:
        if label not in self.store.label_names:
            raise Refused(400, f"label {label!r} is not one of the model's: {', '.join(self.store.label_names)}")
        with self.lock:
            b = self._browser(session, annotator)
            self._check_shown(b, index)
            suggestion, probability = self._suggestion(index)
            self.store.add(Label(self.texts[index], label, annotator, datetime.now(timezone.utc).isoformat(
                timespec="seconds"), suggestion, round(probability, 6), self.scored.name, key=self.keys[index]))
            b.queue.popleft()
            if index in self.shown_as_second:
                self.shown_as_second.discard(index)
            elif self.wants_second(self.keys[index]):
                self.second.append(index)
            self._fill(b)
            return self._item(b)

    def skip(self, session: str, annotator: str, index: int) -> dict:
        """Sets the shown text aside (until the server restarts) and shows the next."""
        with self.lock:
            b = self._browser(session, annotator)
            self._check_shown(b, index)
            b.queue.popleft()
            if index in self.shown_as_second:
                self.shown_as_second.discard(index)  # this annotator passes: another may still take it
                self.second.append(index)
            else:
                self.skipped.add(index)
            self._fill(b)
            return self._item(b)

    def undo(self, session: str, annotator: str) -> dict:
        """Takes back ``annotator``'s last label; its text is shown again, first."""
        with self.lock:
            b = self._browser(session, annotator)
            last = next((r for r in reversed(self.store.rows) if r.annotator == annotator), None)
            if last is None:
                raise Refused(409, f"nothing to undo: {annotator!r} has given no label")
            if last.key not in self.index:
                raise Refused(409, "the last label's text is not in the --unlabelled file any more; edit the labels "
                                   "file by hand to take it back")
            self.store.remove_last(annotator)
            i = self.index[last.key]
            if i in self.second:
                self.second.remove(i)
            if len(self.store.annotators_of(last.key)) > 0:
                self.shown_as_second.add(i)  # the other annotator's label stays: this is a second look again
            b.queue.appendleft(i)
            self._explain_later(i)
            return self._item(b)

    def _check_shown(self, b: Browser, index: int) -> None:
        if not b.queue or b.queue[0] != index:
            raise Refused(409, f"text {index} is not the one this page shows now (another tab, or an old page?); "
                               "reload the page")

    def _suggestion(self, index: int) -> tuple[str, float]:
        """The model's label for a pool text, and its probability."""
        probs = self.scored.probabilities[index]
        return self.store.label_names[int(probs.argmax())], float(probs.max())

    def _item(self, b: Browser) -> dict:
        if not b.queue:
            return {"item": None, "progress": self.progress()}
        i = b.queue[0]
        names = self.store.label_names
        return {"item": {"id": i, "text": self.texts[i], "suggestion": self._suggestion(i)[0],
                         "probabilities": {n: round(float(p), 4) for n, p in zip(names, self.scored.probabilities[i])},
                         "second_look": i in self.shown_as_second,
                         "explanation": self._explanation(i)},
                "progress": self.progress()}

    def progress(self) -> dict:
        with self.lock:  # the state route reads it beside the label routes' writes
            return self._progress()

    def _progress(self) -> dict:
        rows = self.store.rows
        agreed = [r.suggestion == r.label for r in rows if r.suggestion]
        annotators = collections.Counter(r.annotator for r in rows)
        return {"labelled": len({r.key for r in rows}), "labels": len(rows), "counts": self.store.counts(),
                "annotators": dict(annotators), "pool": len(self.texts),
                "left": int(self.available.sum()) + len(self.returned), "skipped": len(self.skipped),
                "model": self.scored.name, "strategy": self.strategy,
                "suggestions_right": (sum(agreed) / len(agreed)) if agreed else None,
                "agreement": self.store.agreement()}

    # --- attributions --------------------------------------------------------------------------------

    def _explain_later(self, index: int) -> None:
        scored = self.scored
        if self.explain and (scored.name, index) not in self.explanations:
            self.explainer.submit(self._explain, scored, index)

    def _explain(self, scored: Scored, index: int) -> None:
        if (scored.name, index) in self.explanations:
            return
        try:
            if scored.trained is None:
                from sentiment_tf.export.versions import read_metadata
                from sentiment_tf.models import family

                scored.trained = family.load_trained(scored.version_dir, read_metadata(scored.version_dir))
            e, = scored.trained.explain([self.keys[index]], steps=EXPLAIN_STEPS)
            self.explanations[(scored.name, index)] = {"tokens": e.tokens, "scores": [round(float(s), 4)
                                                                                      for s in e.scores],
                                                       "label": e.label}
        except Exception as err:  # an attribution is a help, never a reason to stop labelling
            log.warning("attributions of text %d: %s", index, err)
            self.explanations[(scored.name, index)] = {"tokens": [], "scores": [], "label": None,
                                                       "error": type(err).__name__}

    def explanation(self, index: int) -> dict | None:
        if not 0 <= index < len(self.texts):
            raise Refused(404, f"no text {index} in the pool (0–{len(self.texts) - 1})")
        return self._explanation(index)

    def _explanation(self, index: int) -> dict | None:
        if not self.explain:  # one answer for every text: nothing is stored per text
            return EXPLAIN_OFF
        return self.explanations.get((self.scored.name, index))
