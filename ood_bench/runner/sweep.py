"""A sweep: the run matrix, resume bookkeeping, an executor, progress and a summary.

Resume rule: a run whose record exists, validates and was made by the same run (``same_run``) is skipped; a
record made with other options is a conflict (never silently mixed; ``--force`` replaces it);
anything else (no record, a torn one, a leftover work folder) is redone from scratch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OodBenchError, UsageError
from ..io_utils import read_json
from ..paths import results_dir as resolve_results
from ..records import RunKey, record_path, validate_record
from .identity import same_run
from .spec import RunSpec

log = logging.getLogger(__name__)


@dataclass
class SweepOptions:
    model: str
    strategies: list[str]
    dataset: str
    properties: list[str]
    split: str | None
    folds: str
    seeds: list[int]
    train_fractions: list[float]
    template: RunSpec  # options shared by every run (preset, pretrained, steps...)


def plan(opts: SweepOptions) -> list[RunSpec]:
    """Expand the matrix; validates names and split/fold selections (cheap, no training)."""
    from ..datasets import load_dataset
    from ..models import MODELS
    from ..splits import load_split
    from ..strategies import STRATEGIES
    from .execute import default_split
    from .identity import canonical

    model = MODELS.get(opts.model)
    for strategy in opts.strategies:
        model.check_strategy(strategy)
        STRATEGIES.get(strategy).resolve_params(opts.template.strategy_params)
    check_matrix(opts)
    ds = load_dataset(opts.dataset, opts.template.data_dir)
    specs = []
    for prop in opts.properties:
        target = ds.spec.target(prop or None)
        split_name = opts.split or default_split(ds.spec.kind, target.name)
        split = load_split(opts.dataset, split_name, opts.template.splits_dir)
        folds = split.select_folds(opts.folds)
        for strategy, fold, seed, frac in itertools.product(opts.strategies, folds, opts.seeds,
                                                             opts.train_fractions):
            key = RunKey(opts.dataset, split_name, fold, opts.model, strategy, seed, frac, target.name)
            specs.append(canonical(RunSpec(**{**opts.template.__dict__, "key": key})))
    return specs


def check_matrix(opts: SweepOptions) -> None:
    """Empty or impossible axes are one-line errors, not a silent sweep of zero runs."""
    import dataclasses

    for axis, values in (("--strategy", opts.strategies), ("--seeds", opts.seeds),
                         ("--train-fraction", opts.train_fractions), ("--property", opts.properties)):
        if not values:
            raise UsageError(f"{axis} selects nothing; give at least one value")
    for frac in opts.train_fractions:
        dataclasses.replace(opts.template, key=dataclasses.replace(opts.template.key, train_fraction=frac)).check()


def status_of(spec: RunSpec) -> str:
    """'complete', 'conflict' (a record made with other options), 'corrupt' (a torn or invalid
    record: redone) or 'todo'."""
    path = record_path(resolve_results(spec.results_dir), spec.key)
    if not path.exists():
        return "todo"
    try:
        rec = read_json(path)
    except OodBenchError:
        return "corrupt"
    if validate_record(rec):
        return "corrupt"
    return "complete" if same_run(rec["config"], spec) else "conflict"


@dataclass
class SweepResult:
    done: list[RunKey] = field(default_factory=list)
    skipped: list[RunKey] = field(default_factory=list)
    failed: list[tuple[RunKey, str]] = field(default_factory=list)
    conflicts: list[RunKey] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.conflicts


def partition(specs: Iterable[RunSpec], force: bool) -> tuple[list[RunSpec], SweepResult]:
    todo, result = [], SweepResult()
    for spec in specs:
        st = "todo" if force else status_of(spec)
        if st == "complete":
            result.skipped.append(spec.key)
        elif st == "conflict":
            result.conflicts.append(spec.key)
        else:
            todo.append(spec)
    return todo, result


def planned_steps(spec: RunSpec) -> int:
    """Training steps of one run, as its backend plans them (0 for closed-form fits)."""
    from ..backends import backend_for
    from ..datasets import get_spec
    from ..models import MODELS
    from ..strategies import STRATEGIES

    model = MODELS.get(spec.key.model)
    return backend_for(model).planned_steps(spec, model, STRATEGIES.get(spec.key.strategy),
                                            get_spec(spec.key.dataset).kind)


def estimate_steps(specs: list[RunSpec]) -> int:
    """Training steps the runs will take in all (a soup trains each member in full)."""
    from ..strategies import STRATEGIES

    return sum(planned_steps(s) * STRATEGIES.get(s.key.strategy).trainings_per_run(s.strategy_params)
               for s in specs)


def sweep_root(specs: list[RunSpec]) -> Path:
    return resolve_results(specs[0].results_dir) if specs else resolve_results(None)
