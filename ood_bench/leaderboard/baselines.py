"""Published baselines: one YAML card per model under ``baselines/`` (schema: baselines/README.md).

Numbers stay the strings printed in the paper; :func:`as_decimal` turns them into exact decimals
for ranking, so ``"0.0171"`` is never shown as ``0.017100000000000001``. Bracketed spreads
(``id_se``/``ood_se``) are standard errors over training runs, as the paper prints them. A card
for a registered model that oodbench measures but no paper reports (``dummy``, ``cm-krr``...)
carries its citation and no numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, DataMissingError

BASELINES_ENV = "OODBENCH_BASELINES_DIR"

QM9 = "qm9"
QM9_PROPERTIES = ("homo", "lumo", "gap", "zpve", "r2", "alpha", "mu", "Cv")  # Table 3 column order
QM9_UNITS = {"homo": "Hartree", "lumo": "Hartree", "gap": "Hartree", "zpve": "Hartree", "r2": "bohr^2",
             "alpha": "bohr^3", "mu": "Debye", "Cv": "cal/(mol K)"}
QM9_SPLIT_FAMILY = "boom"

MATBENCH_DATASETS = ("matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites")
MATBENCH_PAPER_NAMES = {"matbench_dielectric": "dielectric", "matbench_log_gvrh": "elasticity",
                        "matbench_perovskites": "perovskites"}
MATBENCH_UNITS = {"matbench_dielectric": "unitless", "matbench_log_gvrh": "log10(GPa)",
                  "matbench_perovskites": "eV/unit cell"}
OOD_METHODS = ("LOCO", "SparseXcluster", "SparseXsingle", "SparseYcluster", "SparseYsingle")
SPLIT_METHODS = (*OOD_METHODS, "Random")
# Table 4's split methods are our published-fold split files.
METHOD_TO_SPLIT = {**{m: f"omee2024-{m}" for m in OOD_METHODS}, "Random": "random"}
SPLIT_TO_METHOD = {v: k for k, v in METHOD_TO_SPLIT.items()}

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9+-]*$")
_TOP = {"name", "key", "params", "citation", "source_table", "source_order", "reported_only", "model",
        "strategy", "notes", "metrics"}


@dataclass(frozen=True)
class Card:
    """One model's published numbers."""

    name: str
    key: str
    params: str | None
    citation: str
    source_table: tuple[str, ...]
    reported_only: bool
    metrics: dict[str, Any]
    model: str | None = None
    strategy: str | None = None
    notes: tuple[str, ...] = ()
    source_order: dict[str, int] = field(default_factory=dict)
    path: Path | None = None

    def qm9(self, prop: str) -> dict[str, str] | None:
        """``{id, ood, id_se?, ood_se?, metric, unit}`` for a QM9 property, or None."""
        return self.metrics.get(QM9, {}).get(QM9_SPLIT_FAMILY, {}).get(prop)

    def matbench(self, dataset: str, method: str) -> str | None:
        """The printed MAE for a MatBench dataset and Table 4 split method, or None."""
        entry = self.metrics.get(dataset, {}).get(method)
        return entry["mae"] if entry else None

    @property
    def has_numbers(self) -> bool:
        """False for a measured-only card (a registered model no paper reports)."""
        return bool(self.metrics)

    @property
    def has_qm9(self) -> bool:
        return QM9 in self.metrics

    @property
    def has_matbench(self) -> bool:
        return any(d in self.metrics for d in MATBENCH_DATASETS)

    def order(self, table: str) -> int:
        return int(self.source_order.get(table, 10_000))


def as_decimal(text: str) -> Decimal:
    return Decimal(str(text))


def decimals_of(text: str) -> int:
    """Printed decimal places of a number string ("0.00010" -> 5, "51.7" -> 1, "25458" -> 0)."""
    return len(text.split(".", 1)[1]) if "." in text else 0


def default_baselines_dir() -> Path:
    """``$OODBENCH_BASELINES_DIR``, else the cards oodbench ships (``ood_bench.paths.baselines_dir``)."""
    from ..paths import baselines_dir

    return baselines_dir()


def _is_number(v: Any) -> bool:
    if not isinstance(v, str) or not _NUMBER.match(v):
        return False
    try:
        Decimal(v)
    except InvalidOperation:
        return False
    return True


def _registered_model(name: Any) -> bool:
    if not isinstance(name, str) or not name:
        return False
    from ..models import MODELS

    return name in MODELS


def validate_card(data: Any, stem: str | None = None) -> list[str]:
    """Problems with a card (empty when valid). ``stem`` is the file name without ``.yaml``.

    A card with published numbers needs ``source_table`` and ``metrics``; a card for a registered
    model that is only measured here (``reported_only: false``, ``model`` registered) leaves both
    out (or empty): it then holds the model's citation only.
    """
    if not isinstance(data, dict):
        return ["card is not a YAML mapping"]
    measured_only = (data.get("reported_only") is False and _registered_model(data.get("model"))
                     and not data.get("metrics") and not data.get("source_table"))
    problems = _missing_fields(data, measured_only)
    if problems:
        return problems
    problems += [f"unknown field '{k}'" for k in data if k not in _TOP]
    problems += _check_identity(data, stem)
    problems += _check_sources(data, measured_only)
    problems += _check_runnable(data)
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        problems.append("notes must be a list of strings")
    return problems if measured_only else problems + _check_metrics(data["metrics"])


def _missing_fields(data: dict, measured_only: bool) -> list[str]:
    required = ("name", "key", "citation", "reported_only") if measured_only else (
        "name", "key", "citation", "source_table", "reported_only", "metrics")
    problems = [f"missing field '{f}'" for f in required if f not in data]
    if "params" not in data:
        problems.append("missing field 'params' (use null when the source gives none)")
    return problems


def _check_identity(data: dict, stem: str | None) -> list[str]:
    """Name, key (matching the file name), parameter count and citation."""
    problems = []
    if not isinstance(data["name"], str) or not data["name"].strip():
        problems.append("name must be a non-empty string")
    if not isinstance(data["key"], str) or not _KEY.match(data["key"]):
        problems.append("key must be lowercase letters, digits, '+' or '-'")
    elif stem is not None and data["key"] != stem:
        problems.append(f"key '{data['key']}' differs from the file name '{stem}.yaml'")
    params = data["params"]
    if params is not None and not (isinstance(params, str) and re.match(r"^[\d.]+[KMB]$", params)):
        problems.append("params must be a string like '9.2M' or null")
    if not isinstance(data["citation"], str) or len(data["citation"]) < 20:
        problems.append("citation must be a full reference string")
    return problems


def _check_sources(data: dict, measured_only: bool) -> list[str]:
    """The source table(s) the numbers come from, named in the citation, and their row order."""
    problems = []
    tables = data.get("source_table", [])
    if isinstance(tables, str):
        tables = [tables]
    if not isinstance(tables, list) or not all(isinstance(t, str) and t for t in tables) or (
            not tables and not measured_only):
        problems.append("source_table must be a table name or a list of them")
        tables = []
    if isinstance(data.get("citation"), str) and not all(t in data["citation"] for t in tables):
        problems.append("citation must name the source table(s) the numbers come from")
    order = data.get("source_order", {})
    if not isinstance(order, dict) or not all(isinstance(v, int) for v in order.values()):
        problems.append("source_order must map table names to integer positions")
    return problems


def _check_runnable(data: dict) -> list[str]:
    if not isinstance(data["reported_only"], bool):
        return ["reported_only must be true or false"]
    if data["reported_only"]:
        return []
    return [f"a runnable card (reported_only: false) needs '{f}'" for f in ("model", "strategy")
            if not isinstance(data.get(f), str) or not data[f]]


def _check_metrics(metrics: Any) -> list[str]:
    if not isinstance(metrics, dict) or not metrics:
        return ["metrics must be a non-empty mapping (only a card for a registered model measured "
                "here, reported_only: false, may have none)"]
    problems = []
    for dataset, by_split in metrics.items():
        if dataset == QM9:
            problems += _check_qm9(by_split)
        elif dataset in MATBENCH_DATASETS:
            problems += _check_matbench(dataset, by_split)
        else:
            problems.append(f"metrics: unknown dataset '{dataset}'")
    return problems


def _check_qm9(by_split: Any) -> list[str]:
    if not isinstance(by_split, dict) or set(by_split) != {QM9_SPLIT_FAMILY}:
        return [f"metrics.qm9 must have exactly the split family '{QM9_SPLIT_FAMILY}'"]
    props = by_split[QM9_SPLIT_FAMILY]
    if not isinstance(props, dict):
        return ["metrics.qm9.boom must map properties to entries"]
    problems = [f"metrics.qm9.boom: unknown property '{p}'" for p in props if p not in QM9_PROPERTIES]
    for p, e in props.items():
        where = f"metrics.qm9.boom.{p}"
        if not isinstance(e, dict):
            problems.append(f"{where} must be a mapping")
            continue
        extra = set(e) - {"metric", "unit", "id", "ood", "id_se", "ood_se", "id_std", "ood_std"}
        if extra:
            problems.append(f"{where}: unknown fields {sorted(extra)}")
        if e.get("metric") != "rmse":
            problems.append(f"{where}: metric must be 'rmse'")
        if p in QM9_UNITS and e.get("unit") != QM9_UNITS[p]:
            problems.append(f"{where}: unit must be '{QM9_UNITS[p]}'")
        for f in ("id", "ood"):
            if not _is_number(e.get(f)):
                problems.append(f"{where}.{f} must be a quoted number string as printed, e.g. \"0.0171\"")
        for f in ("id_se", "ood_se"):
            if f in e and not _is_number(e[f]):
                problems.append(f"{where}.{f} must be a quoted number string")
        if ("id_se" in e) != ("ood_se" in e):
            problems.append(f"{where}: give both id_se and ood_se or neither")
        for f in ("id_std", "ood_std"):
            if f in e:
                problems.append(f"{where}.{f}: the paper's bracketed values are standard errors; name them "
                                f"{f.replace('_std', '_se')}")
    return problems


def _check_matbench(dataset: str, by_split: Any) -> list[str]:
    if not isinstance(by_split, dict) or not by_split:
        return [f"metrics.{dataset} must map split methods to entries"]
    problems = [f"metrics.{dataset}: unknown split method '{m}' (known: {', '.join(SPLIT_METHODS)})"
                for m in by_split if m not in SPLIT_METHODS]
    for m, e in by_split.items():
        where = f"metrics.{dataset}.{m}"
        if not isinstance(e, dict):
            problems.append(f"{where} must be a mapping")
            continue
        extra = set(e) - {"metric", "unit", "mae"}
        if extra:
            problems.append(f"{where}: unknown fields {sorted(extra)}")
        if e.get("metric") != "mae":
            problems.append(f"{where}: metric must be 'mae'")
        if e.get("unit") != MATBENCH_UNITS[dataset]:
            problems.append(f"{where}: unit must be '{MATBENCH_UNITS[dataset]}'")
        if not _is_number(e.get("mae")):
            problems.append(f"{where}.mae must be a quoted number string as printed, e.g. \"0.4690\"")
    return problems


def read_card(path: Path) -> Card:
    """Read and validate one card; any problem is a one-line CorruptFileError naming the file."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CorruptFileError(f"{path}: not readable YAML ({type(exc).__name__}: {exc})") from None
    problems = validate_card(data, Path(path).name.removesuffix(".yaml"))
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CorruptFileError(f"{path}: {problems[0]}{more}")
    tables = data.get("source_table") or []
    return Card(
        name=data["name"], key=data["key"], params=data["params"], citation=data["citation"],
        source_table=tuple([tables] if isinstance(tables, str) else tables), reported_only=data["reported_only"],
        metrics=data.get("metrics") or {}, model=data.get("model"), strategy=data.get("strategy"),
        notes=tuple(data.get("notes", [])), source_order=dict(data.get("source_order", {})), path=Path(path),
    )


def load_cards(directory: str | Path | None = None) -> list[Card]:
    """Every ``*.yaml`` card in ``directory`` (default :func:`default_baselines_dir`), validated."""
    root = Path(directory) if directory else default_baselines_dir()
    if not root.is_dir():
        raise DataMissingError(f"baselines folder {root} not found; set {BASELINES_ENV} or run from the repo root")
    cards = [read_card(p) for p in sorted(root.glob("*.yaml"))]
    keys = [c.key for c in cards]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise CorruptFileError(f"{root}: duplicate card keys {dupes}")
    return cards


def qm9_cards(cards: list[Card]) -> list[Card]:
    return sorted((c for c in cards if c.has_qm9), key=lambda c: (c.order("Table 3"), c.key))


def matbench_cards(cards: list[Card]) -> list[Card]:
    return sorted((c for c in cards if c.has_matbench), key=lambda c: (c.order("Table 4"), c.key))


def card_for_run(cards: list[Card], model: str, strategy: str) -> Card | None:
    """The runnable card for a (model, strategy), if any (used for display names)."""
    for c in cards:
        if not c.reported_only and c.model == model and c.strategy == strategy:
            return c
    return None
