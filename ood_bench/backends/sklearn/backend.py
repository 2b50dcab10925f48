"""The sklearn backend: reference baselines as matbench defines them, on the same splits.

A run reads the dataset's cached feature matrix (computed once per dataset, never per fold),
drops feature columns with too many NaNs in the fitted rows, mean-imputes the rest, and fits the
preset's estimator. Each point of the preset's hyper-parameter grid is one candidate, selected on
validation by the runner like a deepmd checkpoint.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import UsageError
from ..base import BACKENDS, Backend, Candidate, EvalSet, FoldInputs, Resolution, Trained


@dataclass(frozen=True)
class SklearnPreset:
    """``estimator(seed)`` builds an unfitted estimator; ``grid`` lists parameter settings (one
    candidate each, selected on validation; a single setting when fitting on train+val, where
    validation is in-sample). ``max_train`` caps fitted rows (a seeded subsample) for estimators
    whose cost grows as n^3 (kernel ridge)."""

    name: str
    summary: str
    featurizer: str | None
    estimator: Callable[[int], Any]
    fit_on: str = "train"  # or "train+val" (matbench's reference algorithms see all non-test data)
    grid: tuple[dict[str, Any], ...] = ({},)
    nan_column_max: float = 0.01
    scale: bool = False
    max_train: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # recorded; describes the estimator

    def __post_init__(self) -> None:
        if self.fit_on == "train+val" and len(self.grid) > 1:
            raise ValueError(f"preset {self.name}: a grid needs a held-out validation set (fit_on='train')")


def _featurizer(preset: SklearnPreset):
    if preset.featurizer is None:
        return None
    from ...features.base import FEATURIZERS

    return FEATURIZERS.get(preset.featurizer)


class SklearnBackend(Backend):
    name = "sklearn"
    summary = "scikit-learn estimators on cached per-dataset descriptors (reference baselines)"

    def versions(self) -> dict[str, str | None]:
        from ...versions import package_versions

        return package_versions("scikit-learn", "matminer", "pymatgen")

    def _context(self, spec, model, kind: str | None):
        feat = _featurizer(model.preset(spec.preset))
        if feat is None:
            return None, None
        if kind is not None and kind not in feat.kinds:
            raise UsageError(f"model {model.name} needs {' or '.join(feat.kinds)} ({feat.name} features); "
                             f"{spec.key.dataset} has {kind}")
        return feat, feat.resolve(spec, kind or feat.kinds[0])

    @staticmethod
    def _identity(model, feat, ctx) -> dict[str, Any]:
        return {"model_version": model.version, "features": feat.key() if feat else None,
                **(ctx.identity if ctx else {})}

    def identity(self, spec, model, strategy) -> dict[str, Any]:
        """The same identity ``resolve`` gives (the dataset's kind picks the descriptor head), so a
        planned run's fingerprint matches its record's."""
        from ...datasets import get_spec

        feat, ctx = self._context(spec, model, get_spec(spec.key.dataset).kind)
        return self._identity(model, feat, ctx)

    def resolve(self, spec, model, strategy, dataset) -> Resolution:
        feat, ctx = self._context(spec, model, dataset.spec.kind)
        return Resolution(identity=self._identity(model, feat, ctx), record=dict(ctx.record) if ctx else {},
                          state={"featurizer": feat, "context": ctx})

    def _matrix(self, inputs: FoldInputs) -> tuple[dict, np.ndarray, dict[str, Any]]:
        """(row of each id, X, feature info) for the whole dataset."""
        from ...features.base import cached_features

        feat, ctx = inputs.resolution.state["featurizer"], inputs.resolution.state["context"]
        if feat is None:  # no features: the dummy predicts a constant
            ids = [i for s in inputs.sets.values() for i in s.ids]
            return {i: k for k, i in enumerate(dict.fromkeys(ids))}, np.zeros((len(set(ids)), 1)), {}
        ids, X, info = cached_features(feat, inputs.dataset, ctx.options, extra_key=ctx.cache_key)
        return {i: k for k, i in enumerate(ids)}, X, info

    def train(self, inputs: FoldInputs, on_line=None) -> Trained:
        preset: SklearnPreset = inputs.preset
        t0 = time.time()
        row, X, info = self._matrix(inputs)
        feature_s = time.time() - t0
        fit_ids = list(inputs.sets["train"].ids)
        y = inputs.sets["train"].y
        if preset.fit_on == "train+val":
            fit_ids += inputs.sets["val"].ids
            y = np.concatenate([y, inputs.sets["val"].y])
        if preset.max_train and len(fit_ids) > preset.max_train:
            keep = np.sort(np.random.default_rng(inputs.spec.key.seed).choice(len(fit_ids), preset.max_train,
                                                                               replace=False))
            fit_ids, y = [fit_ids[k] for k in keep], y[keep]
        Xfit = X[[row[i] for i in fit_ids]]
        columns = np.flatnonzero(np.isnan(Xfit).mean(axis=0) <= preset.nan_column_max)
        candidates = []
        for k, params in enumerate(preset.grid):
            pipe = self._pipeline(preset, inputs.spec.key.seed, params)
            pipe.fit(Xfit[:, columns], y)
            candidates.append(Candidate(k, _params_name(params), pipe))
        config = {"estimator": preset.settings, "featurizer": info.get("featurizer"),
                  "feature_settings": info.get("settings"), "feature_dim": int(X.shape[1]),
                  "feature_columns_used": int(len(columns)), "fit_on": preset.fit_on, "n_fit": len(fit_ids),
                  "grid": list(preset.grid)}
        return Trained(candidates=candidates, config=config,
                       training={"feature_seconds": round(feature_s, 2), "features_from_cache": info.get("from_cache"),
                                 "peak_mem_scope": "process (in-process fit: the driver's peak so far)"},
                       peak_mem_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                       state={"row": row, "X": X, "columns": columns})

    @staticmethod
    def _pipeline(preset: SklearnPreset, seed: int, params: dict[str, Any]):
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        est = preset.estimator(seed)
        est.set_params(**params)
        steps = [SimpleImputer(strategy="mean", keep_empty_features=True)]
        if preset.scale:
            steps.append(StandardScaler())
        return make_pipeline(*steps, est)

    def predict(self, inputs, trained, candidate, eval_set: EvalSet) -> np.ndarray:
        st = trained.state
        rows = [st["row"][i] for i in eval_set.ids]
        return np.asarray(candidate.handle.predict(st["X"][rows][:, st["columns"]]), dtype=float).reshape(-1)


def _params_name(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "fit"


BACKENDS.add("sklearn", SklearnBackend())
