"""MatBench OOD folds of Omee et al. 2024 (npj Comput Mater 10:144), regenerated and corrected.

All five methods work on Orbital-Field Matrix features (``ood_bench.features.ofm``):

- ``LOCO``: ``KMeans(50, max_iter=500, random_state=222)`` on the unscaled features; fold k
  tests cluster k.
- ``SparseX*``: ``TSNE(2, random_state=42)`` of the features, ``scipy.stats.gaussian_kde`` (Scott)
  of the embedding evaluated at every sample; the 500 lowest-density samples are clustered with
  ``KMeans(50, max_iter=500, random_state=222)`` on their full features; each cluster's
  lowest-density member is its anchor.
- ``SparseY*``: the same with the density of the target values, ``gaussian_kde(y)`` evaluated
  **at each sample**. (The published folds evaluate it on a 100-point grid and use the grid
  indices as sample rows, so their 50 anchors are rows 0-99 of the dataset; we do not copy that.)
- ``*single``: the anchor is the test set. ``*cluster``: the anchor plus its 10 nearest
  neighbours (Euclidean, full feature space), clusters taken in label order, never reusing a
  sample already in another fold's test set and never the anchor itself (the published lists
  sometimes repeat the anchor) - so the 50 test sets are disjoint, 11 ids each.
- Every fold: the other samples are split train / val with
  ``train_test_split(test_size=0.2, random_state=42)`` (val = ceil(20%)), lists sorted by row.

Ties (equal densities or distances) are broken by dataset row order everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from .methods import OOD_METHODS, SPLIT_METHODS, SplitMethod, generator_block
from .schema import Fold, SplitSet

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class OfmFoldParams:
    n_clusters: int = 50
    kmeans_max_iter: int = 500
    kmeans_random_state: int = 222
    kmeans_n_init: int = 1  # sklearn>=1.4 default ("auto" = 1 for k-means++); 10 costs 10x, same ARI
    n_low_density: int = 500
    n_neighbours: int = 10
    tsne_random_state: int = 42
    tsne_perplexity: float = 30.0
    tsne_init: str = "pca"
    tsne_learning_rate: str = "auto"
    tsne_max_iter: int = 1000
    val_fraction: float = 0.2
    val_random_state: int = 42


def kmeans_labels(X: np.ndarray, p: OfmFoldParams, n_clusters: int | None = None) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = min(n_clusters or p.n_clusters, len(X))
    km = KMeans(n_clusters=k, max_iter=p.kmeans_max_iter, random_state=p.kmeans_random_state,
                n_init=p.kmeans_n_init)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on duplicate points
        return km.fit_predict(np.asarray(X, dtype=np.float64))


def loco_test_sets(X: np.ndarray, p: OfmFoldParams) -> list[np.ndarray]:
    """Rows of each KMeans cluster, in label order (empty clusters dropped)."""
    labels = kmeans_labels(X, p)
    return [np.nonzero(labels == k)[0] for k in range(labels.max() + 1) if np.any(labels == k)]


def tsne_embedding(X: np.ndarray, p: OfmFoldParams) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(p.tsne_perplexity, (len(X) - 1) / 3)
    tsne = TSNE(n_components=2, random_state=p.tsne_random_state, perplexity=perplexity,
                init=p.tsne_init, learning_rate=p.tsne_learning_rate, max_iter=p.tsne_max_iter)
    return tsne.fit_transform(np.asarray(X, dtype=np.float64))


def kde_at_samples(points: np.ndarray) -> np.ndarray:
    """``scipy.stats.gaussian_kde`` (Scott's rule) fit on the points and evaluated at each of them."""
    from scipy.stats import gaussian_kde

    pts = np.asarray(points, dtype=np.float64)
    data = pts.T if pts.ndim == 2 else pts
    return gaussian_kde(data)(data)


def sparse_anchors(density: np.ndarray, X: np.ndarray, p: OfmFoldParams) -> tuple[list[int], dict]:
    """Anchor row per KMeans cluster of the ``n_low_density`` lowest-density rows (label order)."""
    order = np.argsort(density, kind="stable")
    low = order[: min(p.n_low_density, len(order))]
    labels = kmeans_labels(X[low], p)
    anchors = []
    for k in range(labels.max() + 1):
        members = low[labels == k]
        if len(members) == 0:
            continue
        # lowest density member; ties by row order (members come in density order already)
        anchors.append(int(members[np.argmin(density[members])]))
    info = {
        "n_low_density": len(low),
        "low_density_threshold": float(density[low[-1]]),
        "anchor_density_max": float(max(density[a] for a in anchors)),
    }
    return anchors, info


def expand_anchors(X: np.ndarray, anchors: list[int], n_neighbours: int) -> list[np.ndarray]:
    """Each anchor plus its nearest unused neighbours; test sets are disjoint, anchor first."""
    from sklearn.neighbors import NearestNeighbors

    n = len(X)
    want = min(n, n_neighbours + 1 + len(anchors) * (n_neighbours + 1))
    nn = NearestNeighbors(n_neighbors=want, algorithm="brute").fit(X)
    dist, idx = nn.kneighbors(X[anchors])
    used = set(anchors)
    out = []
    for a, d, row in zip(anchors, dist, idx, strict=True):
        # stable re-sort by (distance, row) so equal distances break by row order
        order = np.lexsort((row, d))
        picked = []
        for j in row[order]:
            j = int(j)
            if j in used:
                continue
            picked.append(j)
            used.add(j)
            if len(picked) == n_neighbours:
                break
        out.append(np.array([a, *picked], dtype=np.int64))
    return out


def test_sets_for(method: str, X: np.ndarray, y: np.ndarray, p: OfmFoldParams,
                  embedding: np.ndarray | None = None) -> tuple[list[np.ndarray], dict]:
    """Test rows per fold for one OOD method, plus facts for the metadata."""
    if method == "LOCO":
        sets = loco_test_sets(X, p)
        return sets, {"cluster_sizes": [len(s) for s in sets]}
    if method.startswith("SparseX"):
        if embedding is None:
            embedding = tsne_embedding(X, p)
        density = kde_at_samples(embedding)
        space = "t-SNE embedding of the OFM features"
    elif method.startswith("SparseY"):
        density = kde_at_samples(np.asarray(y, dtype=np.float64))
        space = "target values (evaluated at each sample, not on a grid)"
    else:
        raise ValueError(method)
    anchors, info = sparse_anchors(density, X, p)
    info["density_space"] = space
    if method.endswith("single"):
        return [np.array([a]) for a in anchors], info
    return expand_anchors(X, anchors, p.n_neighbours), info


def train_val_rows(n: int, test_rows: np.ndarray, p: OfmFoldParams) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    rest = np.setdiff1d(np.arange(n), test_rows)
    train, val = train_test_split(rest, test_size=p.val_fraction, random_state=p.val_random_state)
    return np.sort(train), np.sort(val)


def folds_from_test_sets(ids: list, test_sets: list[np.ndarray], p: OfmFoldParams) -> dict[str, Fold]:
    folds = {}
    for k, rows in enumerate(test_sets):
        train, val = train_val_rows(len(ids), rows, p)
        folds[str(k)] = Fold(str(k), [ids[i] for i in train], [ids[i] for i in val],
                             {"test": [ids[i] for i in rows]})
    return folds


_NOTES = {
    "LOCO": ["Omee et al. 2024 LOCO on OFM features; fold k tests KMeans cluster k"],
    "SparseXsingle": ["t-SNE + gaussian_kde density of the OFM features; one anchor per fold"],
    "SparseXcluster": ["t-SNE + gaussian_kde density; anchor + 10 nearest unused neighbours (OFM space), "
                       "test sets disjoint, the anchor is never repeated (the published lists can repeat it)"],
    "SparseYsingle": ["FIXED vs published: target KDE evaluated at each sample (the published code evaluated "
                      "on a 100-point grid and used grid indices as sample rows)"],
    "SparseYcluster": ["FIXED vs published: target KDE evaluated at each sample (the published code evaluated "
                       "on a 100-point grid and used grid indices as sample rows)",
                       "anchor + 10 nearest unused neighbours in OFM space; test sets disjoint"],
}


def build_ofm_splits(ds, methods: list[str], X: np.ndarray, feature_info: dict,
                     params: OfmFoldParams | None = None, progress=None,
                     n_threads: int | None = None) -> list[SplitSet]:
    """SplitSets for the requested OOD methods on one MatBench dataset (features in ``ds.ids`` order).

    ``n_threads`` caps the OpenMP/BLAS threads of t-SNE and KMeans (results do not depend on it).
    Default: one thread below 5,000 samples (on a busy machine OpenMP barriers make 2 threads ~15x
    slower than 1 for small inputs), all cores above.
    """
    from threadpoolctl import threadpool_limits

    if n_threads is None:
        import os

        n_threads = 1 if len(X) < 5000 else (os.cpu_count() or 1)
    with threadpool_limits(limits=n_threads):
        return _build_ofm_splits(ds, methods, X, feature_info, params, progress)


def drop_zero_columns(X: np.ndarray) -> np.ndarray:
    """Features without the columns that are 0 for every sample (most OFM orbital pairs never occur).

    Euclidean distances, KMeans and t-SNE (PCA init) see the same geometry; they just run on 35-83%
    of the columns.
    """
    X = np.asarray(X, dtype=np.float64)
    return np.ascontiguousarray(X[:, (X != 0).any(axis=0)])


def _build_ofm_splits(ds, methods, X, feature_info, params, progress) -> list[SplitSet]:
    p = params or OfmFoldParams()
    X = drop_zero_columns(X)
    ids = list(ds.ids)
    target = ds.spec.targets[0].name
    y = ds.table[target].to_numpy(dtype=np.float64)
    embedding = None
    out = []
    for method in methods:
        if progress:
            progress(f"{ds.name}: {method}")
        if method.startswith("SparseX") and embedding is None:
            embedding = tsne_embedding(X, p)
        tests, info = test_sets_for(method, X, y, p, embedding=embedding)
        folds = folds_from_test_sets(ids, tests, p)
        gen_params = {"method": method, **asdict(p)}
        if method == "LOCO":
            for key in ("n_low_density", "n_neighbours", "tsne_random_state", "tsne_perplexity", "tsne_init",
                        "tsne_learning_rate", "tsne_max_iter"):
                gen_params.pop(key)
        elif not method.startswith("SparseX"):
            for key in ("tsne_random_state", "tsne_perplexity", "tsne_init", "tsne_learning_rate", "tsne_max_iter"):
                gen_params.pop(key)
        if method.endswith("single"):
            gen_params.pop("n_neighbours")
        gen_params["features"] = feature_info.get("settings", {})
        gen = generator_block(method, gen_params, _NOTES[method] + [
            "validation: train_test_split(rest, test_size=0.2, random_state=42) in every fold",
            "ties (equal densities/distances) broken by dataset row order",
            f"all-zero feature columns dropped before KMeans/t-SNE/neighbours ({X.shape[1]} of 1024 kept; "
            "same Euclidean geometry)",
        ])
        provenance = {
            "dataset_source": ds.source.rsplit("/", 1)[-1],
            "checksum_status": ds.checksum_status,
            "n_samples": len(ids),
            "n_folds": len(folds),
            "test_sizes": sorted({len(f.tests["test"]) for f in folds.values()}),
            "feature_cache_key": feature_info.get("cache", "").rsplit("/", 1)[-1],
            "facts": info,
            "published_counterpart": f"omee2024-{method}",
        }
        out.append(SplitSet(dataset=ds.name, name=method, folds=folds, test_sets=["test"], generator=gen,
                            dataset_sha256=ds.sha256, property=target, provenance=provenance))
    return out


def build_many(ds, methods: list[str], options: dict) -> list[SplitSet]:
    """Features once (cached), t-SNE once, then every requested OOD method."""
    from ..features.ofm import compute_ofm_features

    X, info = compute_ofm_features(ds, n_jobs=options.get("n_jobs"), progress=options.get("progress", True),
                                   use_cache=options.get("use_cache", True))
    params = options.get("ofm_params") or OfmFoldParams()
    return build_ofm_splits(ds, methods, X, info, params, progress=options.get("log"),
                            n_threads=options.get("n_threads"))


for _m in OOD_METHODS:
    SPLIT_METHODS.add(_m, SplitMethod(
        name=_m, kind="crystals", needs_features=True,
        description=_NOTES[_m][0],
        build=lambda ds, options, _m=_m: build_many(ds, [_m], options),
        batch_build=build_many,
    ))
