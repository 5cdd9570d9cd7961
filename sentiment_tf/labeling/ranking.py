"""The next text to label, re-ranked at every pick: ``select``'s strategies made incremental.

``select`` chooses a whole batch up front from one model. Here every text taken (shown, labelled,
skipped) is a centre at once, so the next pick already accounts for it; and an adaptation brings new
probabilities and features for the whole pool (:meth:`Ranker.reset`). For ``diverse`` and ``hybrid``
that is k-means++'s D² sampling with the taken texts as the centres so far (BADGE for ``hybrid``, over
gradient embeddings): one pick costs one distance per pool text, a few milliseconds for 20,000.
"""

from __future__ import annotations

import numpy as np

from sentiment_tf.evaluation import selection


class Ranker:
    """Picks among ``available`` pool indices by ``strategy``.

    Args:
        strategy: random | uncertainty | diverse | hybrid (see ``sentiment_tf.evaluation.selection``).
        probabilities: the model's probabilities for every pool text ``[n, labels]``.
        embeddings: its pooled features ``[n, d]`` (needed by diverse and hybrid).
        taken: indices already shown or labelled (centres for diverse and hybrid).
        seed: the same pool, labels and seed pick the same texts.
        measure: margin | entropy, for uncertainty.
    """

    def __init__(self, strategy: str, probabilities: np.ndarray, embeddings: np.ndarray | None, taken: list[int],
                 seed: int, measure: str = "margin"):
        if strategy not in selection.STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        n = len(probabilities)
        self.strategy = strategy
        self.rng = np.random.default_rng(seed)
        self.uncertainty = selection.uncertainty(probabilities, measure)
        self.order = (self.rng.permutation(n) if strategy == "random"
                      else np.lexsort((self.rng.permutation(n), -self.uncertainty)))
        self.points = None
        if strategy in selection.NEEDS_EMBEDDINGS:
            points = (selection.gradient_embedding(embeddings, probabilities) if strategy == "hybrid"
                      else np.asarray(embeddings, dtype=np.float32))
            self.points = points
            self.sq_norms = np.einsum("ij,ij->i", points, points)
            self.distance = np.full(n, np.inf, dtype=np.float64)  # squared distance to the nearest centre
            for start in range(0, len(taken), 256):
                self._add_centres(np.asarray(taken[start:start + 256], dtype=np.int64))

    def _add_centres(self, idx: np.ndarray) -> None:
        if len(idx) == 0:
            return
        centres = self.points[idx]
        d = self.sq_norms[:, None] + np.einsum("ij,ij->i", centres, centres)[None, :] - 2.0 * self.points @ centres.T
        self.distance = np.minimum(self.distance, np.clip(d.min(axis=1), 0.0, None))
        self.distance[idx] = 0.0

    def take(self, index: int) -> None:
        """``index`` is shown to somebody: a centre from now on."""
        if self.points is not None:
            self._add_centres(np.array([index], dtype=np.int64))

    def pick(self, available: np.ndarray) -> int | None:
        """The next pool index among ``available`` (a boolean mask), or None when none is left."""
        if not available.any():
            return None
        if self.points is not None:
            if np.isinf(self.distance).all():  # no centre yet: BADGE starts at the largest gradient, diverse at random
                first = (np.where(available, self.sq_norms, -1.0).argmax() if self.strategy == "hybrid"
                         else self.rng.choice(np.flatnonzero(available)))
                return int(first)
            weights = np.where(available, self.distance, 0.0)
            total = weights.sum()
            if total > 0 and np.isfinite(total):
                return int(self.rng.choice(len(weights), p=weights / total))
            # every available text sits on a centre (duplicates in feature space): by uncertainty
        return int(self.order[available[self.order]][0])
