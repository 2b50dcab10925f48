"""Model-independent evaluator: metrics from saved (id, y_true, y_pred) predictions only.

Pure functions, in the spirit of OGB/TDC evaluators: nothing here knows about deepmd, so a
record's metrics can always be recomputed from its predictions and compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

METRICS = ("mae", "rmse", "r2", "max_error")


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MAE, RMSE, R^2 and max absolute error; R^2 is NaN when y_true is constant or n < 2."""
    t = np.asarray(y_true, dtype=float).reshape(-1)
    p = np.asarray(y_pred, dtype=float).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values, y_pred {p.size}")
    if t.size == 0:
        raise ValueError("no predictions to evaluate")
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 and t.size > 1 else float("nan")
    return {
        "n": int(t.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": r2,
        "max_error": float(np.max(np.abs(err))),
    }


def evaluate_sets(predictions: Mapping[str, Mapping[str, Sequence]]) -> dict[str, dict[str, float]]:
    """Metrics per evaluation set of a record's ``predictions`` block."""
    return {
        name: regression_metrics(block["y_true"], block["y_pred"])
        for name, block in predictions.items()
    }
