"""Which unlabelled texts to label next (the strategies of ``python -m sentiment_tf.select``).

* ``random``: a seeded uniform sample (the baseline every strategy must beat).
* ``uncertainty``: the texts the model is least sure of — smallest margin between its two most
  probable labels, or highest entropy (Settles, *Active Learning Literature Survey*, 2009).
* ``diverse``: k-means++ seeding over the model's pooled representation (the ``embed`` signature):
  each pick is drawn with probability ∝ its squared distance to the texts already picked, so the
  batch covers the pool instead of 500 near-duplicates (Arthur & Vassilvitskii, 2007).
* ``hybrid``: BADGE (Ash et al., *Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
  Bounds*, ICLR 2020): k-means++ seeding over gradient embeddings — the gradient of the loss with
  respect to the output layer, were the predicted label true, ``(p − onehot(ŷ)) ⊗ h`` — whose norm
  grows with uncertainty and whose direction carries the representation.

k-means++ seeding is scikit-learn's ``kmeans_plusplus`` with one trial per pick (plain D² sampling).
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("random", "uncertainty", "diverse", "hybrid")
NEEDS_EMBEDDINGS = ("diverse", "hybrid")


def uncertainty(probabilities: np.ndarray, measure: str = "margin") -> np.ndarray:
    """Per text, in [0, 1]: 1 − (p₁ − p₂) for ``margin``, entropy / log(labels) for ``entropy``."""
    p = np.asarray(probabilities, dtype=np.float64)
    if measure == "margin":
        top = np.sort(p, axis=1)
        return 1.0 - (top[:, -1] - top[:, -2])
    if measure == "entropy":
        return -np.sum(p * np.log(np.clip(p, 1e-12, None)), axis=1) / np.log(p.shape[1])
    raise ValueError(f"unknown uncertainty measure {measure!r}")


def gradient_embedding(embeddings: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """BADGE's ``(p − onehot(ŷ)) ⊗ h``: ``[n, labels × d]``."""
    p = np.asarray(probabilities, dtype=np.float32)
    residual = p - np.eye(p.shape[1], dtype=np.float32)[p.argmax(axis=1)]
    return (residual[:, :, None] * np.asarray(embeddings, dtype=np.float32)[:, None, :]).reshape(len(p), -1)


def _by_score(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by descending score, ties in a seeded random order."""
    return np.lexsort((rng.permutation(len(scores)), -scores))


def _kmeans_pp(points: np.ndarray, budget: int, seed: int, fallback: np.ndarray) -> np.ndarray:
    """k-means++ seeds of ``points``; where the points run out of distinct positions (seeding then
    repeats a point), the rest come from ``fallback`` order."""
    from sklearn.cluster import kmeans_plusplus

    # One trial per pick: plain D² sampling, as BADGE uses (sklearn's default greedy trials would also
    # make the picks depend on the budget; with one, a smaller budget's picks are a prefix of a larger's).
    _, picked = kmeans_plusplus(points, n_clusters=budget, random_state=seed, n_local_trials=1)
    order = list(dict.fromkeys(int(i) for i in picked))  # first occurrence of each
    if len(order) < budget:
        chosen = set(order)
        order += [int(i) for i in fallback if int(i) not in chosen][: budget - len(order)]
    return np.array(order, dtype=np.int64)


def choose(strategy: str, probabilities: np.ndarray, embeddings: np.ndarray | None, budget: int, seed: int,
           measure: str = "margin") -> np.ndarray:
    """Indices of the ``budget`` texts to label, in the order they were chosen (the first ``k`` of a
    selection are what a budget of ``k`` would choose, for every strategy)."""
    n = len(probabilities)
    if not 1 <= budget <= n:
        raise ValueError(f"budget {budget} must be between 1 and the {n} candidates")
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return rng.permutation(n)[:budget]
    scores = uncertainty(probabilities, measure)
    by_uncertainty = _by_score(scores, rng)
    if strategy == "uncertainty":
        return by_uncertainty[:budget]
    if embeddings is None:
        raise ValueError(f"strategy {strategy!r} needs embeddings")
    if strategy == "diverse":
        return _kmeans_pp(np.asarray(embeddings, dtype=np.float32), budget, seed, rng.permutation(n))
    if strategy == "hybrid":
        return _kmeans_pp(gradient_embedding(embeddings, probabilities), budget, seed, by_uncertainty)
    raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
