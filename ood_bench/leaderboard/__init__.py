"""The leaderboard: a pure reduce from result records and published baselines to markdown + figures.

- ``baselines``: load and validate the YAML cards under ``baselines/`` (published numbers).
- ``aggregate``: records -> tidy frame -> per-cell mean, standard error over seeds, coverage.
- ``tables``: the "Measured here" overview and markdown tables in the layouts of the paper's Tables 3 and 4.
- ``compare``: strategy comparison (ID/OOD change against Scratch and FT, the paper's Fig. 2(a-c)) and
  the ablation table (Avg. ↑RMSE against MFT, Fig. 3(c-e)); strategy roles from the registry.
- ``figures``: PNG figures (matplotlib Agg canvas).
- ``build``: :func:`build_leaderboard`, which ties them together.
"""

from __future__ import annotations

from typing import Any


def build_leaderboard(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`ood_bench.leaderboard.build.build_leaderboard` (imported lazily: pandas, matplotlib)."""
    from .build import build_leaderboard as _build

    return _build(*args, **kwargs)


__all__ = ["build_leaderboard"]
