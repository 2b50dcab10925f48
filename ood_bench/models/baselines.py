"""Reference baselines (scikit-learn backend), each with a card in ``baselines/``.

- ``dummy``: the training-set mean (matbench's Dummy reference).
- ``rf-scm-magpie``: matbench's RF-SCM/Magpie reference algorithm: a random forest with a fixed,
  large number of trees and no tuning, on Sine Coulomb Matrix + Magpie ElementProperty features,
  trained on train + val.
- ``cm-krr``: QM9's classic descriptor baseline: Coulomb-matrix eigenvalue spectrum (Rupp et al.
  2012) with Laplacian-kernel ridge regression (Hansen et al. 2013), kernel width and ridge
  chosen on validation.
- ``dpa3-frozen``: the pretrained DPA3 descriptor, frozen, pooled over atoms, with a ridge or
  random-forest head: linear probing in closed form.
"""

from __future__ import annotations

import numpy as np

from ..backends.sklearn.backend import SklearnPreset
from .base import MODELS, ModelSpec


def _dummy(seed: int):
    from sklearn.dummy import DummyRegressor

    return DummyRegressor(strategy="mean")


def _forest(n_estimators: int):
    def make(seed: int):
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=-1)

    return make


def _krr(seed: int):
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=KernelRidge(kernel="laplacian"), transformer=StandardScaler())


def _ridge(seed: int):
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.logspace(-6, 3, 19))


MODELS.add("dummy", ModelSpec(
    name="dummy", label="Dummy", backend="sklearn", default_preset="mean", default_strategy="scratch",
    strategies=("scratch",), card="dummy",
    summary="predicts the training-set mean (matbench's Dummy reference)",
    presets={"mean": SklearnPreset("mean", "sklearn DummyRegressor(strategy='mean') fitted on train",
                                   featurizer=None, estimator=_dummy,
                                   settings={"class": "sklearn.dummy.DummyRegressor", "strategy": "mean"})},
))

MODELS.add("rf-scm-magpie", ModelSpec(
    name="rf-scm-magpie", label="RF-SCM/Magpie", backend="sklearn", default_preset="matbench",
    default_strategy="scratch", strategies=("scratch",), card="rf-scm-magpie",
    summary="matbench's RF-SCM/Magpie reference: random forest (500 trees, no tuning) on Sine Coulomb "
            "Matrix + Magpie features (crystals)",
    presets={"matbench": SklearnPreset(
        "matbench", "RandomForestRegressor(n_estimators=500), columns >1% NaN dropped, mean-imputed, "
        "fitted on train + val", featurizer="scm-magpie", estimator=_forest(500), fit_on="train+val",
        settings={"class": "sklearn.ensemble.RandomForestRegressor", "n_estimators": 500})},
))

MODELS.add("cm-krr", ModelSpec(
    name="cm-krr", label="CM-KRR", backend="sklearn", default_preset="hansen2013",
    default_strategy="scratch", strategies=("scratch",), card="cm-krr",
    summary="Coulomb-matrix eigenspectrum + Laplacian kernel ridge regression (molecules; 10,000 training "
            "molecules, width and ridge chosen on validation)",
    presets={"hansen2013": SklearnPreset(
        "hansen2013", "KernelRidge(laplacian) on the sorted CM eigenvalues, standardised target, 10k train, "
        "gamma x alpha grid on validation", featurizer="cm-eigenspectrum", estimator=_krr, max_train=10_000,
        grid=tuple({"regressor__gamma": g, "regressor__alpha": a}
                   for g in (1e-3, 3e-3, 1e-2, 3e-2) for a in (1e-8, 1e-4)),
        settings={"class": "sklearn.kernel_ridge.KernelRidge", "kernel": "laplacian", "target": "standardised",
                  "max_train": 10_000})},
))

MODELS.add("dpa3-frozen", ModelSpec(
    name="dpa3-frozen", label="DPA3-frozen", backend="sklearn", default_preset="ridge", default_strategy="lp",
    strategies=("lp",), card="dpa3-frozen",
    summary="pretrained DPA3 descriptor, frozen, [mean|sum]-pooled, scikit-learn head: linear probing in "
            "closed form (any deepmd checkpoint; --pretrained)",
    presets={
        "ridge": SklearnPreset("ridge", "standardised features, RidgeCV (alpha 1e-6..1e3, efficient LOO)",
                               featurizer="dpa3-descriptor", estimator=_ridge, scale=True,
                               settings={"class": "sklearn.linear_model.RidgeCV", "alphas": "logspace(-6,3,19)"}),
        "rf": SklearnPreset("rf", "RandomForestRegressor(n_estimators=200) on the pooled descriptor",
                            featurizer="dpa3-descriptor", estimator=_forest(200),
                            settings={"class": "sklearn.ensemble.RandomForestRegressor", "n_estimators": 200}),
    },
))
