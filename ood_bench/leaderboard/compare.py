"""Strategy comparison (the paper's Fig. 2(a-c) quantities) and the ablation study (Fig. 3(c-e)),
both from complete measured cells only (a pure reduce over the summary).

- :func:`comparison_layout` / :func:`comparison_table`: per setup (dataset, split, property, model,
  preset, stand-in flag, training fraction, other run options) with two or more strategies
  measured, one row per strategy and its non-default options: ID error, OOD error, OOD/ID, and the
  relative change of the ID and OOD error against the reference strategy (Scratch) and against
  plain fine-tuning (FT), in %, negative = lower error = better. A split with a single test set
  (MatBench): its error is the OOD error and the same run's error on the ``random`` split is the ID
  error (empty without one); the ``random`` split itself has an ID error only.
- :func:`ablation_layout` / :func:`ablation_table`: the paper's "Avg. ↑RMSE": for each ablation
  strategy and each MFT run with another auxiliary branch/data set (and FT, Fig. 3(c)), the mean
  over the properties/splits that both have complete of (RMSE - RMSE of the baseline MFT) / RMSE of
  the baseline MFT, in %, separately on the ID and OOD test sets. The bar figure is
  :func:`ood_bench.leaderboard.figures.ablation_figures`.

Which strategy plays which part comes from the registry, never from names (:func:`strategy_roles`).
Run options come from the record key's variant (``runner.identity.variant_of``): ``k=v`` tokens are
strategy parameters, except ``aux=``/``auxdata=`` (the auxiliary task) and ``subset=``/``pool=``
(the training subset, part of the setup); other tokens (the preset, a head note) are the setup too.
A strategy that uses no auxiliary data ran the same whatever ``--aux-branch`` said: its auxiliary
options are ignored (with several such records the one without them, else the first, is used). A
strategy that needs no pretrained model (Scratch) has no stand-in flag: it is compared with the
runs of every checkpoint kind of its setup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

from .aggregate import Cell, headline_metric, measured_tags, model_label, reference_strategy, strategy_label
from .baselines import MATBENCH_DATASETS, QM9, Card
from .tables import MATBENCH_DECIMALS, MISSING, QM9_HEADERS, _md, measured_entry, qm9_decimals, split_row_label
from .tables import split_sort_key as _split_sort_key

RANDOM_SPLIT = "random"          # the split whose single test set is in-distribution (MatBench's random folds)
AUX_KEYS = ("aux", "auxdata")    # variant tokens naming the auxiliary task (branch, data set digest)
SETUP_KEYS = ("subset", "pool")  # variant tokens naming the training subset: the same for every strategy compared
REF_MARK = "ref"

PANELS = {"c": "(c) reference", "d": "(d) ablation", "e": "(e) auxiliary task"}


# ------------------------------------------------------------------------------ registry roles


@dataclass(frozen=True)
class Roles:
    """Which registered strategy plays which part in the paper's comparisons."""

    reference: str                   # Scratch: ``Strategy.reference``
    fine_tune: str | None            # FT: last strategy before MFT that needs a pretrained model and no aux data
    multi_task: str | None           # MFT: first strategy that needs a pretrained model and uses aux data
    ablations: tuple[str, ...] = ()  # other aux-data strategies whose summary says "(ablation": MFT's ablations




def strategy_roles() -> Roles:
    """Roles as the registry declares them (``Strategy.reference`` and ``Strategy.role``)."""
    from ..strategies import STRATEGIES

    items = sorted(STRATEGIES.items(), key=lambda kv: (kv[1].order, kv[0]))
    ft = next((n for n, s in items if s.role == "fine-tune"), None)
    mft = next((n for n, s in items if s.role == "multi-task"), None)
    ablations = tuple(n for n, s in items if s.role == "ablation")
    return Roles(reference_strategy(), ft, mft, ablations)


def _registered(name: str):
    from ..strategies import STRATEGIES

    return STRATEGIES.get(name) if name in STRATEGIES else None


def _rank(name: str) -> tuple[int, str]:
    s = _registered(name)
    return (s.order if s is not None else 1000, name)


# ------------------------------------------------------------------------------ variants and runs


class Options(NamedTuple):
    context: tuple[str, ...]   # the setup: preset token, subset/pool, head note
    params: tuple[str, ...]    # non-default strategy parameters (``k=v``)
    aux: tuple[str, ...]       # ``aux=...``, ``auxdata=...``


def split_variant(variant: str) -> Options:
    """The variant's tokens by kind. A parameter value may itself hold commas (``alphas=0,0.5,1``):
    a bare token right after a parameter continues its value (the preset, the only other bare token
    of a key's variant, comes first; a head note has spaces)."""
    context: list[str] = []
    params: list[str] = []
    aux: list[str] = []
    last = None
    for tok in (t.strip() for t in str(variant or "").split(",")):
        if not tok:
            continue
        key, eq, _ = tok.partition("=")
        if " " in tok or (not eq and last is not params):
            context.append(tok)
            last = context
        elif not eq:
            params[-1] += f",{tok}"
        elif key in AUX_KEYS:
            aux.append(tok)
            last = aux
        elif key in SETUP_KEYS:
            context.append(tok)
            last = context
        else:
            params.append(tok)
            last = params
    return Options(tuple(context), tuple(params), tuple(aux))


class Base(NamedTuple):
    """A setup on one split: everything but the strategy and its options."""

    dataset: str
    split: str
    property: str
    model: str
    preset: str
    train_fraction: float
    context: tuple[str, ...]


class RunKey(NamedTuple):
    strategy: str
    params: tuple[str, ...]
    aux: tuple[str, ...]


@dataclass
class _Run:
    orig_aux: tuple[str, ...]           # auxiliary options as recorded (ignored for non-aux strategies)
    sets: dict[str, Cell]


Index = dict[tuple, _Run]  # (setup, stand-in flag or None, run) -> run


def run_index(summary: pd.DataFrame, metric: str | None = None) -> Index:
    """(setup, stand-in flag or None, run) -> cells per test set, on ``metric`` (default: each
    dataset's headline metric); validation cells left out."""
    out: dict[tuple, dict[tuple[str, ...], dict[str, Cell]]] = {}
    if summary.empty:
        return {}
    for r in summary[summary["set"] != "val"].itertuples():
        if r.metric != (metric or headline_metric(r.dataset)):
            continue
        opts = split_variant(r.variant)
        strat = _registered(r.strategy)
        aux = opts.aux if strat is None or strat.uses_aux else ()
        stand_in = None if strat is not None and not strat.needs_pretrained else bool(r.stand_in)
        base = Base(str(r.dataset), str(r.split), str(r.property), str(r.model), str(r.preset),
                    float(r.train_fraction), opts.context)
        key = (base, stand_in, RunKey(str(r.strategy), opts.params, aux))
        out.setdefault(key, {}).setdefault(opts.aux, {})[str(r.set)] = r.cell
    index: Index = {}
    for key, by_aux in out.items():
        orig = min(by_aux, key=lambda a: (a != (), a))  # without auxiliary options first
        index[key] = _Run(orig, by_aux[orig])
    return index


def _stand_in_groups(flags: Iterable[bool | None]) -> list[bool | None]:
    """The checkpoint kinds a setup was run with (None: only strategies that need no checkpoint)."""
    kinds = sorted({st for st in flags if st is not None})
    return kinds or [None]


def _complete(c: Cell | None) -> bool:
    return c is not None and c.complete and c.mean is not None


def _change(cell: Cell | None, ref: Cell | None) -> str:
    """Relative change of ``cell`` against ``ref`` in % (negative = lower error)."""
    if cell is None or ref is None:
        return MISSING
    if not (_complete(cell) and _complete(ref)):
        return "partial"
    if ref.mean <= 0:  # type: ignore[operator]
        return MISSING
    return f"{100 * (cell.mean - ref.mean) / ref.mean:+.1f}%"  # type: ignore[operator]


def _options_label(strategy: str, options: tuple[str, ...]) -> str:
    return strategy_label(strategy) + (f" ({', '.join(options)})" if options else "")


def setup_label(model: str, preset: str, context: tuple[str, ...], stand_in: bool | None,
                train_fraction: float) -> str:
    """``DPA3 (tiny, stand-in pretrained, measured)``: the measured-label tags without a strategy."""
    ctx = ", ".join(t for t in context if t != preset)
    return f"{model_label(model)} ({', '.join(measured_tags(model, preset, bool(stand_in), train_fraction, ctx))})"


def _decimals(dec: dict[str, int], dataset: str, prop: str) -> int:
    return dec.get(prop, MATBENCH_DECIMALS) if dataset == QM9 else MATBENCH_DECIMALS


def _split_label(dataset: str, split: str) -> str:
    return split_row_label(split)[1] if dataset in MATBENCH_DATASETS else split


# ------------------------------------------------------------------------------ strategy comparison


@dataclass
class CompRow:
    run: RunKey
    label: str
    id_cell: Cell | None
    ood_cell: Cell | None
    vs_ref: tuple[str, str] = (MISSING, MISSING)   # (ID, OOD) change against the reference strategy
    vs_ft: tuple[str, str] = (MISSING, MISSING)    # (ID, OOD) change against FT


@dataclass
class CompGroup:
    base: Base
    stand_in: bool | None
    metric: str
    rows: list[CompRow] = field(default_factory=list)

    def label(self) -> str:
        b = self.base
        return setup_label(b.model, b.preset, b.context, self.stand_in, b.train_fraction)


def _id_ood(index: Index, base: Base, st: bool | None, run: RunKey) -> tuple[Cell | None, Cell | None]:
    sets = index[(base, st, run)].sets
    if "id_test" in sets or "ood_test" in sets:
        return sets.get("id_test"), sets.get("ood_test")
    test = sorted(sets)[0]
    if base.split == RANDOM_SPLIT:
        return sets[test], None
    rand = index.get((base._replace(split=RANDOM_SPLIT), st, run))
    return (rand.sets.get(test) if rand else None), sets[test]


def comparison_layout(summary: pd.DataFrame, roles: Roles | None = None) -> list[CompGroup]:
    """Every setup with two or more strategies measured, rows in registered strategy order."""
    roles = roles or strategy_roles()
    index = run_index(summary)
    by_base: dict[Base, list[tuple[bool | None, RunKey]]] = {}
    for base, st, run in index:
        by_base.setdefault(base, []).append((st, run))
    groups = []
    ref_key = RunKey(roles.reference, (), ())
    ft_key = RunKey(roles.fine_tune, (), ()) if roles.fine_tune else None
    for base, members in by_base.items():
        for kind in _stand_in_groups(st for st, _ in members):
            runs = sorted(((st, run) for st, run in members if st in (kind, None)),
                          key=lambda m: (_rank(m[1].strategy), m[1].params, m[1].aux))
            if len({run.strategy for _, run in runs}) < 2:
                continue
            g = CompGroup(base, kind, headline_metric(base.dataset))
            cells = {run: _id_ood(index, base, st, run) for st, run in runs}
            for _, run in runs:
                row = CompRow(run, _options_label(run.strategy, run.params + run.aux), *cells[run])
                for attr, key in (("vs_ref", ref_key), ("vs_ft", ft_key)):
                    if key is not None and run == key:
                        setattr(row, attr, (REF_MARK, REF_MARK))
                    elif key is not None and key in cells:
                        setattr(row, attr, (_change(row.id_cell, cells[key][0]), _change(row.ood_cell, cells[key][1])))
                g.rows.append(row)
            groups.append(g)
    return sorted(groups, key=lambda g: (g.base.dataset, _split_sort_key(g.base.split, g.base.property),
                                         g.base.property, g.base.model, g.base.preset, g.base.train_fraction,
                                         g.base.context, str(g.stand_in)))


def _coverage(a: Cell | None, b: Cell | None) -> str:
    if a is None and b is None:
        return MISSING
    if a is None or b is None:
        return (a or b).coverage()  # type: ignore[union-attr]
    ca, cb = a.coverage(), b.coverage()
    return ca if ca == cb else f"ID {ca}; OOD {cb}"


def _ratio(a: Cell | None, b: Cell | None) -> str:
    if _complete(a) and _complete(b) and a.mean > 0:  # type: ignore[union-attr,operator]
        return f"{b.mean / a.mean:.2f}"  # type: ignore[union-attr,operator]
    if a is None or b is None or (_complete(a) and _complete(b)):  # missing, or a zero ID error
        return MISSING
    return "partial"


def comparison_table(cards: list[Card], summary: pd.DataFrame, roles: Roles | None = None) -> str | None:
    roles = roles or strategy_roles()
    groups = comparison_layout(summary, roles)
    if not groups:
        return None
    dec = qm9_decimals(cards)
    ref, ft = strategy_label(roles.reference), strategy_label(roles.fine_tune) if roles.fine_tune else None
    headers = ["Dataset", "Split", "Property", "Setup", "Metric", "Strategy", "ID test", "OOD test", "OOD/ID",
               f"ID vs {ref}", f"OOD vs {ref}", *([f"ID vs {ft}", f"OOD vs {ft}"] if ft else []), "Coverage"]
    body = []
    for g in groups:
        d = _decimals(dec, g.base.dataset, g.base.property)
        for i, r in enumerate(g.rows):
            head = ([g.base.dataset, _split_label(g.base.dataset, g.base.split), g.base.property or MISSING,
                     g.label(), g.metric.upper()] if i == 0 else [""] * 5)
            values = [measured_entry(r.id_cell, d).plain(), measured_entry(r.ood_cell, d).plain(),
                      _ratio(r.id_cell, r.ood_cell), *r.vs_ref, *(r.vs_ft if ft else ())]
            body.append([*head, r.label, *values, _coverage(r.id_cell, r.ood_cell)])
    return _md(headers, body)


# ------------------------------------------------------------------------------ ablations


class Unit(NamedTuple):
    """What an average runs over: one property (QM9 BOOM) or split, on the ID or the OOD test set."""

    split: str
    property: str
    role: str   # ID | OOD


def _role(split: str, set_name: str) -> str:
    if set_name in ("id_test", "ood_test"):
        return "ID" if set_name == "id_test" else "OOD"
    return "ID" if split == RANDOM_SPLIT else "OOD"


@dataclass
class AblationRow:
    panel: str                  # c | d | e
    label: str
    units: dict[Unit, Cell]
    increase: dict[str, float | None] = field(default_factory=dict)    # role -> mean % (None: no number)
    over: dict[str, list[Unit]] = field(default_factory=dict)          # role -> units averaged
    partial: dict[str, bool] = field(default_factory=dict)             # role -> common units exist, none complete

    def render(self, role: str) -> str:
        v = self.increase.get(role)
        if v is None:
            return "partial" if self.partial.get(role) else MISSING
        return f"{v:+.1f}% (n={len(self.over[role])})"


@dataclass
class AblationGroup:
    dataset: str
    model: str
    preset: str
    train_fraction: float
    context: tuple[str, ...]
    params: tuple[str, ...]
    stand_in: bool | None
    baseline: str                   # label of the baseline MFT run
    rows: list[AblationRow] = field(default_factory=list)

    def label(self) -> str:
        return setup_label(self.model, self.preset, self.context + self.params, self.stand_in, self.train_fraction)

    @property
    def stem(self) -> str:
        """File name stem of the group's figure (deterministic)."""
        from .figures import _slug

        opts = ",".join(t for t in (*self.context, *self.params) if t != self.preset)
        return (f"ablation_{_slug(self.dataset)}_{_slug(self.model)}_{_slug(self.preset or 'unknown')}"
                + (f"_{_slug(opts)}" if opts else "") + ("_stand-in" if self.stand_in else "")
                + (f"_frac{_slug(f'{self.train_fraction:g}')}" if self.train_fraction != 1.0 else ""))


def unit_name(dataset: str, unit: Unit) -> str:
    if unit.split.startswith("boom-"):
        return QM9_HEADERS.get(unit.property, unit.property)
    name = _split_label(dataset, unit.split)
    return f"{name} {unit.property}" if unit.property and dataset not in MATBENCH_DATASETS else name


def _average(row: AblationRow, base: dict[Unit, Cell]) -> None:
    for role in ("ID", "OOD"):
        common = [u for u in sorted(row.units, key=lambda u: (_split_sort_key(u.split, u.property), u))
                  if u.role == role and u in base]
        done = [u for u in common if _complete(row.units[u]) and _complete(base[u]) and base[u].mean > 0]  # type: ignore[operator]
        row.over[role] = done
        row.partial[role] = bool(common) and not done
        row.increase[role] = (sum(100 * (row.units[u].mean - base[u].mean) / base[u].mean for u in done)  # type: ignore[operator]
                              / len(done)) if done else None


def ablation_layout(summary: pd.DataFrame, roles: Roles | None = None) -> list[AblationGroup]:
    """Setups (dataset, model, preset, training fraction, options other than the auxiliary task,
    checkpoint kind) with the multi-task strategy (MFT) and at least one ablation strategy or one MFT
    run with other auxiliary options, on RMSE.

    Baseline: the MFT run whose auxiliary options most other strategies of the setup were run with
    (ties: no auxiliary options, i.e. the checkpoint's default branch and data, then alphabetical).
    Rows: (c) FT when measured, (d) each ablation strategy x auxiliary options, (e) each other MFT."""
    roles = roles or strategy_roles()
    mft = roles.multi_task
    if mft is None:
        return []
    index = run_index(summary, "rmse")
    setups: dict[tuple, dict[tuple[bool | None, str, tuple[str, ...]], dict[Unit, Cell]]] = {}
    shared: dict[tuple, dict[tuple[bool | None, str], set[tuple[str, ...]]]] = {}
    for (base, st, run), rec in index.items():
        key = (base.dataset, base.model, base.preset, base.train_fraction, base.context, run.params)
        units = setups.setdefault(key, {}).setdefault((st, run.strategy, run.aux), {})
        for set_name, cell in rec.sets.items():
            units[Unit(base.split, base.property, _role(base.split, set_name))] = cell
        shared.setdefault(key, {}).setdefault((st, run.strategy), set()).add(rec.orig_aux)
    groups = []
    for key, runs in setups.items():
        for kind in _stand_in_groups(st for st, _, _ in runs):
            members = {(s, aux): u for (st, s, aux), u in runs.items() if st in (kind, None)}
            mfts = {aux: u for (s, aux), u in members.items() if s == mft}
            abl = {(s, aux): u for (s, aux), u in members.items() if s in roles.ablations}
            if not mfts or (not abl and len(mfts) < 2):
                continue
            used = [a for (st, s), auxes in shared[key].items() if st in (kind, None) and s != mft for a in auxes]
            base_aux = min(mfts, key=lambda a: (-used.count(a), a != (), a))
            base_label = _options_label(mft, base_aux)
            g = AblationGroup(*key, stand_in=kind, baseline=base_label)  # type: ignore[misc]
            ft = roles.fine_tune
            if ft and (ft, ()) in members:
                g.rows.append(AblationRow("c", strategy_label(ft), members[(ft, ())]))
            for (s, aux), u in sorted(abl.items(), key=lambda kv: (_rank(kv[0][0]), kv[0][1])):
                note = () if aux == base_aux else (aux or ("default auxiliary task",))
                g.rows.append(AblationRow("d", _options_label(s, note), u))
            for aux in sorted(a for a in mfts if a != base_aux):
                g.rows.append(AblationRow("e", _options_label(mft, aux or ("default auxiliary task",)), mfts[aux]))
            for row in g.rows:
                _average(row, mfts[base_aux])
            groups.append(g)
    return sorted(groups, key=lambda g: (g.dataset, g.model, g.preset, g.train_fraction, g.context, g.params,
                                         str(g.stand_in)))


def _over(dataset: str, row: AblationRow) -> str:
    ids, oods = ([unit_name(dataset, u) for u in row.over[r]] for r in ("ID", "OOD"))
    if ids == oods:
        return ", ".join(ids) or MISSING
    return "; ".join(f"{r}: {', '.join(names)}" for r, names in (("ID", ids), ("OOD", oods)) if names)


def ablation_table(summary: pd.DataFrame, roles: Roles | None = None,
                   groups: list[AblationGroup] | None = None) -> str | None:
    groups = ablation_layout(summary, roles) if groups is None else groups
    if not groups:
        return None
    body = []
    for g in groups:
        for i, r in enumerate(g.rows):
            head = [g.dataset, g.label(), g.baseline] if i == 0 else ["", "", ""]
            body.append([*head, PANELS[r.panel], r.label, r.render("ID"), r.render("OOD"), _over(g.dataset, r)])
    return _md(["Dataset", "Setup", "Baseline", "Panel", "Run", "ID Avg. ↑RMSE", "OOD Avg. ↑RMSE", "Averaged over"],
               body)
