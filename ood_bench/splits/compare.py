"""How far two split sets of one dataset agree (our regenerated folds vs the published ones).

- LOCO: adjusted Rand index between the two clusterings (each sample labelled by the fold that
  tests it), and the mean best Jaccard overlap of each published cluster with one of ours.
- Single methods: share of published test points that are also test points of ours.
- Cluster methods: share of published test ids (all folds) that ours test too.
"""

from __future__ import annotations

from .schema import SplitSet


def _test_label(split: SplitSet) -> dict:
    label = {}
    for k, f in split.folds.items():
        for t in split.test_sets:
            for i in f.tests[t]:
                label.setdefault(i, k)
    return label


def _test_ids(split: SplitSet) -> set:
    return {i for f in split.folds.values() for t in split.test_sets for i in f.tests[t]}


def compare_splits(ours: SplitSet, published: SplitSet, method: str) -> dict:
    if method == "LOCO":
        from sklearn.metrics import adjusted_rand_score

        a, b = _test_label(ours), _test_label(published)
        common = sorted(set(a) & set(b), key=str)
        ari = adjusted_rand_score([a[i] for i in common], [b[i] for i in common])
        ours_sets = [set(f.tests["test"]) for f in ours.folds.values()]
        best = []
        for f in published.folds.values():
            p = set(f.tests["test"])
            best.append(max(len(p & o) / len(p | o) for o in ours_sets))
        return {"method": method, "ari": round(float(ari), 4), "mean_best_jaccard": round(sum(best) / len(best), 4),
                "n": len(common)}
    ours_ids, pub_ids = _test_ids(ours), _test_ids(published)
    shared = len(ours_ids & pub_ids)
    return {"method": method, "shared_test_ids": shared, "published_test_ids": len(pub_ids),
            "overlap": round(shared / max(len(pub_ids), 1), 4)}


def compare_with_published(dataset: str, splits_dir=None, methods: list[str] | None = None) -> list[dict]:
    from .ofm_folds import OOD_METHODS
    from .published import PREFIX
    from .schema import load_split

    out = []
    for m in methods or OOD_METHODS:
        out.append({"dataset": dataset, **compare_splits(load_split(dataset, m, splits_dir),
                                                         load_split(dataset, PREFIX + m, splits_dir), m)})
    return out
