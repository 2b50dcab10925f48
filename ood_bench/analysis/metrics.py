"""Cluster separation (t-SNE + Davies-Bouldin) and distribution drift (exact 1-Wasserstein)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tsne_2d(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init, ``random_state=seed``); deterministic for a seed.

    Runs single-threaded: on a shared 2-core machine OpenMP threads spinning against other
    processes made t-SNE 10x slower, and one thread keeps results bit-for-bit reproducible.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(points, dtype=np.float64)
    if len(x) < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {len(x)}")
    perplexity = min(30.0, (len(x) - 1) / 3.0)
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def davies_bouldin(points_2d: np.ndarray, labels: Sequence) -> float:
    """Davies-Bouldin index (scikit-learn: Euclidean centroid distance, mean distance to centroid)."""
    from sklearn.metrics import davies_bouldin_score

    return float(davies_bouldin_score(np.asarray(points_2d), np.asarray(labels)))


def db_index_2d(points: np.ndarray, labels: Sequence, seed: int) -> float:
    """Davies-Bouldin index of ``labels`` on the 2-D t-SNE map of ``points`` (lower = better
    separated classes), as in the paper's Supplementary D.1."""
    return davies_bouldin(tsne_2d(points, seed), labels)


def wasserstein1(a: np.ndarray, b: np.ndarray, num_iter_max: int = 10_000_000) -> float:
    """Exact 1-Wasserstein distance between two point clouds with uniform weights and Euclidean
    cost in the full dimension (POT's network simplex, ``ot.emd2``; ``num_iter_max`` is raised
    from POT's 100k so 5,000 x 5,000 problems reach the optimum)."""
    import ot

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"W1 needs two (n, d) arrays of the same d, got {a.shape} and {b.shape}")
    # Direct |a_i - b_j| (scipy cdist); POT's default 'euclidean' uses the |a|^2 + |b|^2 - 2ab
    # expansion, whose rounding (~1e-8) would keep identical clouds from giving exactly 0.
    from scipy.spatial.distance import cdist

    cost = cdist(a, b, metric="euclidean")
    wa = np.full(len(a), 1.0 / len(a))
    wb = np.full(len(b), 1.0 / len(b))
    return max(0.0, float(ot.emd2(wa, wb, cost, numItermax=num_iter_max)))
