"""Result records: one self-describing JSON file per (dataset, split, fold, model, strategy, seed,
train fraction, property), written atomically and validated at write time (like matbench's
``record()``), so the leaderboard can be a pure reduce over files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import CorruptFileError
from .evaluate import evaluate_sets
from .io_utils import read_json, write_json

FORMAT = "oodbench-record/1"
# Compact, gzip-compressed JSON (deterministic bytes): per-sample predictions of thousands of
# records stay small enough to commit. ``record.json`` (plain) is still read.
RECORD_NAME = "record.json.gz"
LEGACY_RECORD_NAME = "record.json"
REQUIRED = ("format", "status", "key", "config", "versions", "data", "predictions", "metrics", "timing")


@dataclass(frozen=True, order=True)
class RunKey:
    """Identity of one run; also its directory under ``results/runs``."""

    dataset: str
    split: str
    fold: str
    model: str
    strategy: str
    seed: int
    train_fraction: float = 1.0
    property: str = ""
    # Options that make a different run of the same model and strategy (a non-default preset...),
    # as a short canonical string; runs with different variants coexist.
    variant: str = ""

    def run_name(self) -> str:
        return f"{self.model}-{self.strategy}" + (f"+{self.variant}" if self.variant else "")

    def relpath(self) -> Path:
        frac = f"{self.train_fraction:g}"
        target = self.property or "target"
        run = f"fold{self.fold}-seed{self.seed}-frac{frac}"
        return Path(self.dataset) / target / self.split / self.run_name() / run

    def label(self) -> str:
        return (f"{self.dataset}/{self.property or '-'}/{self.split}/fold {self.fold}/"
                f"{self.run_name()}/seed {self.seed}/frac {self.train_fraction:g}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunKey:
        return cls(
            dataset=str(d["dataset"]), split=str(d["split"]), fold=str(d["fold"]),
            model=str(d["model"]), strategy=str(d["strategy"]), seed=int(d["seed"]),
            train_fraction=float(d.get("train_fraction", 1.0)), property=str(d.get("property", "")),
            variant=str(d.get("variant", "")),
        )


def record_path(results_dir: Path, key: RunKey) -> Path:
    return Path(results_dir) / "runs" / key.relpath() / RECORD_NAME


def validate_record(rec: Any) -> list[str]:
    """Problems with a record (empty list when valid), including metrics that do not match
    the saved predictions."""
    if not isinstance(rec, dict):
        return ["not a JSON object"]
    problems = [f"missing field '{f}'" for f in REQUIRED if f not in rec]
    if problems:
        return problems
    if rec["format"] != FORMAT:
        problems.append(f"format is {rec['format']!r}, expected {FORMAT!r}")
    if rec["status"] != "complete":
        problems.append(f"status is {rec['status']!r}")
    try:
        RunKey.from_dict(rec["key"])
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"bad key: {exc}")
    preds = rec["predictions"]
    if not isinstance(preds, dict) or not preds:
        return [*problems, "no predictions"]
    for name, block in preds.items():
        try:
            n = len(block["id"])
            if len(block["y_true"]) != n or len(block["y_pred"]) != n:
                problems.append(f"predictions[{name}]: id/y_true/y_pred lengths differ")
            elif not all(math.isfinite(float(v)) for v in block["y_pred"]):
                problems.append(f"predictions[{name}]: non-finite predictions")
        except (KeyError, TypeError, ValueError):
            problems.append(f"predictions[{name}]: needs id, y_true, y_pred lists")
    if problems:
        return problems
    recomputed = evaluate_sets(preds)
    for name, m in recomputed.items():
        saved = rec["metrics"].get(name, {})
        for metric in ("mae", "rmse"):
            if metric not in saved or not math.isclose(saved[metric], m[metric], rel_tol=1e-9, abs_tol=1e-12):
                problems.append(f"metrics[{name}][{metric}] does not match the saved predictions")
    return problems


def write_record(results_dir: Path, rec: dict[str, Any]) -> Path:
    """Validate then write atomically; an invalid record is a bug, so it raises."""
    problems = validate_record(rec)
    if problems:
        raise ValueError("refusing to write an invalid record: " + "; ".join(problems))
    path = record_path(results_dir, RunKey.from_dict(rec["key"]))
    write_json(path, rec, compact=True)
    path.with_name(LEGACY_RECORD_NAME).unlink(missing_ok=True)
    return path


def is_complete(results_dir: Path, key: RunKey) -> bool:
    path = record_path(results_dir, key)
    if not path.exists():
        return False
    try:
        return not validate_record(read_json(path))
    except CorruptFileError:
        return False


@dataclass
class RecordProblem:
    path: Path
    problem: str


def iter_records(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any] | None, str | None]]:
    """Every record file under ``results_dir/runs``: (path, record or None, problem or None)."""
    root = Path(results_dir) / "runs"
    if not root.exists():
        return
    for path in sorted([*root.rglob(RECORD_NAME), *root.rglob(LEGACY_RECORD_NAME)]):
        try:
            rec = read_json(path)
        except CorruptFileError as exc:
            yield path, None, str(exc)
            continue
        problems = validate_record(rec)
        if problems:
            yield path, None, "; ".join(problems)
        else:
            yield path, rec, None


def load_records(results_dir: Path, compact: bool = False) -> tuple[list[dict[str, Any]], list[RecordProblem]]:
    """Valid records, plus the files that were skipped and why (never fatal). ``compact``: each
    set's ``id``/``y_true``/``y_pred`` become numpy arrays as the record is read, so a reduce over
    thousands of records holds their predictions in a fraction of the memory of Python lists."""
    good, bad = [], []
    for path, rec, problem in iter_records(results_dir):
        if rec is None:
            bad.append(RecordProblem(path, problem or "invalid"))
        else:
            rec.setdefault("_path", str(path))
            good.append(_compacted(rec) if compact else rec)
    return good, bad


def _compacted(rec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    for block in (rec.get("predictions") or {}).values():
        block["id"] = np.asarray(block["id"])
        block["y_true"] = np.asarray(block["y_true"], dtype=float)
        block["y_pred"] = np.asarray(block["y_pred"], dtype=float)
    return rec
