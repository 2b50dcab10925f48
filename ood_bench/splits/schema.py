"""Split files: versioned, self-describing lists of ids per fold. Runs read them, never re-split.

Layout: ``splits/<dataset>/<name>.json.xz``::

    {"format": "oodbench-split/1", "dataset": "qm9", "name": "boom-gap", "property": "gap",
     "generator": {"name": ..., "params": {...}, "versions": {...}, "notes": [...]},
     "dataset_sha256": ..., "provenance": {...}, "test_sets": ["id_test", "ood_test"],
     "folds": {"0": {"train": [...], "val": [...], "id_test": [...], "ood_test": [...]}},
     "content_sha256": <sha256 of the canonical JSON of everything else>}

xz compression matters: fold lists of one dataset are near-duplicates, which xz's large window
compresses across folds (gzip's 32 KiB window cannot).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, DataMissingError, UsageError
from ..io_utils import read_json, write_json
from ..paths import splits_dir as resolve_splits_dir

FORMAT = "oodbench-split/1"
SUFFIXES = (".json.xz", ".json.gz", ".json")


@dataclass
class Fold:
    name: str
    train: list
    val: list
    tests: dict[str, list]

    def all_sets(self) -> dict[str, list]:
        return {"train": self.train, "val": self.val, **self.tests}


@dataclass
class SplitSet:
    dataset: str
    name: str
    folds: dict[str, Fold]
    test_sets: list[str]
    generator: dict[str, Any] = field(default_factory=dict)
    dataset_sha256: str = ""
    property: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""

    def fold(self, name: str | int) -> Fold:
        try:
            return self.folds[str(name)]
        except KeyError:
            raise UsageError(
                f"split {self.dataset}/{self.name} has no fold {name!r}; it has "
                f"{len(self.folds)} folds ({_range_text(list(self.folds))})"
            ) from None

    def select_folds(self, spec: str) -> list[str]:
        """'all', '0', '0,3,5' or '0-9' -> fold names, in file order."""
        names = parse_fold_spec(spec)
        if names is None:
            return list(self.folds)
        for n in names:
            self.fold(n)
        return names

    def to_json(self) -> dict[str, Any]:
        body = {
            "format": FORMAT,
            "dataset": self.dataset,
            "name": self.name,
            "property": self.property,
            "generator": self.generator,
            "dataset_sha256": self.dataset_sha256,
            "provenance": self.provenance,
            "test_sets": self.test_sets,
            "folds": {
                k: {"train": f.train, "val": f.val, **{t: f.tests[t] for t in self.test_sets}}
                for k, f in self.folds.items()
            },
        }
        body["content_sha256"] = content_sha256(body)
        return body


def parse_fold_spec(spec: str) -> list[str] | None:
    """'0', '0,3,5' or '0-9' -> fold names in the order given; 'all' -> None (every fold). Checks
    the syntax only: which names a split has is :meth:`SplitSet.select_folds`'s business."""
    if spec.strip() in ("all", "*"):
        return None
    names: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part and all(p.isdigit() for p in part.split("-", 1)):
            lo, hi = (int(p) for p in part.split("-", 1))
            if lo > hi:
                raise UsageError(f"--folds {part}: a range goes from low to high, e.g. {hi}-{lo}")
            names.extend(str(i) for i in range(lo, hi + 1))
        elif part:
            names.append(part)
    if not names:
        raise UsageError(f"--folds {spec!r} selects no fold; give 'all', '0', '0,3' or '0-9'")
    return list(dict.fromkeys(names))


def _range_text(names: list[str]) -> str:
    return f"{names[0]}..{names[-1]}" if len(names) > 3 else ", ".join(names)


def content_sha256(body: dict[str, Any]) -> str:
    canon = {k: v for k, v in body.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def split_path(dataset: str, name: str, splits_dir: str | Path | None = None) -> Path:
    root = resolve_splits_dir(splits_dir) / dataset
    for suffix in SUFFIXES:
        p = root / f"{name}{suffix}"
        if p.exists():
            return p
    return root / f"{name}{SUFFIXES[0]}"


def list_splits(dataset: str | None = None, splits_dir: str | Path | None = None) -> list[tuple[str, str, Path]]:
    """(dataset, split name, path) of every split file present."""
    root = resolve_splits_dir(splits_dir)
    out = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        if not d.is_dir() or (dataset and d.name != dataset):
            continue
        for p in sorted(d.iterdir()):
            for suffix in SUFFIXES:
                if p.name.endswith(suffix):
                    out.append((d.name, p.name[: -len(suffix)], p))
                    break
    return out


def save_split(split: SplitSet, splits_dir: str | Path | None = None, path: Path | None = None) -> Path:
    body = split.to_json()
    problems = _structure_problems(body)
    if problems:
        raise ValueError(f"refusing to write invalid split {split.dataset}/{split.name}: {problems[0]}")
    path = path or (resolve_splits_dir(splits_dir) / split.dataset / f"{split.name}{SUFFIXES[0]}")
    write_json(path, body, compact=True)
    split.path, split.sha256 = path, body["content_sha256"]
    return path


def _structure_problems(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["not a JSON object"]
    for key in ("format", "dataset", "name", "test_sets", "folds"):
        if key not in body:
            return [f"missing '{key}'"]
    if body["format"] != FORMAT:
        return [f"format {body['format']!r} is not {FORMAT!r}"]
    if not isinstance(body["folds"], dict) or not body["folds"]:
        return ["no folds"]
    problems = []
    for k, fold in body["folds"].items():
        sets = ["train", "val", *body["test_sets"]]
        missing = [s for s in sets if not isinstance(fold.get(s), list)]
        if missing:
            problems.append(f"fold {k} lacks id lists {missing}")
            continue
        seen: set = set()
        for s in sets:
            ids = fold[s]
            if len(set(ids)) != len(ids) and s == "train":
                problems.append(f"fold {k}: repeated ids in {s}")
            overlap = seen & set(ids)
            if overlap:
                example = next(iter(overlap))
                problems.append(f"fold {k}: {s} shares {len(overlap)} ids with another set (e.g. {example!r})")
            seen |= set(ids)
    return problems


@functools.lru_cache(maxsize=4)
def _read_checked(path: str, mtime_ns: int, size: int) -> tuple[dict, list[str]]:
    """Parsed body and structural problems, memoised per file version: a sweep over 50 folds
    reads and checksums a split file once, not 50 times (callers must not mutate the body). Four
    files at most: a parsed 50-fold MatBench file holds ~100 MB of id strings."""
    body = read_json(path)
    problems = _structure_problems(body)
    if not problems and body.get("content_sha256") != content_sha256(body):
        problems = ["content checksum mismatch (file edited or truncated); regenerate or restore it"]
    return body, problems


def load_split_file(path: str | Path, known_ids: Iterable | None = None) -> SplitSet:
    """Read and validate a split file; every problem is a one-line CorruptFileError naming it."""
    path = Path(path)
    if not path.exists():
        raise DataMissingError(f"split file {path} not found; create it with `oodbench split`")
    stat = path.stat()
    body, problems = _read_checked(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if not problems and known_ids is not None:
        known = set(known_ids)
        for k, fold in body["folds"].items():
            for s in ["train", "val", *body["test_sets"]]:
                unknown = [i for i in fold[s] if i not in known]
                if unknown:
                    problems.append(f"fold {k} {s}: {len(unknown)} ids not in dataset (e.g. {unknown[0]!r})")
                    break
            if problems:
                break
    if problems:
        raise CorruptFileError(f"{path}: {problems[0]}")
    folds = {
        str(k): Fold(str(k), f["train"], f["val"], {t: f[t] for t in body["test_sets"]})
        for k, f in body["folds"].items()
    }
    return SplitSet(
        dataset=body["dataset"], name=body["name"], folds=folds, test_sets=list(body["test_sets"]),
        generator=body.get("generator", {}), dataset_sha256=body.get("dataset_sha256", ""),
        property=body.get("property"), provenance=body.get("provenance", {}), path=path,
        sha256=body["content_sha256"],
    )


def load_split(dataset: str, name: str, splits_dir: str | Path | None = None,
               known_ids: Iterable | None = None) -> SplitSet:
    """Load ``splits/<dataset>/<name>``; an unknown name lists the available ones."""
    path = split_path(dataset, name, splits_dir)
    if not path.exists():
        available = [n for d, n, _ in list_splits(dataset, splits_dir)]
        hint = f"available: {', '.join(available)}" if available else "none exist yet"
        raise UsageError(
            f"no split '{name}' for {dataset} in {path.parent} ({hint}); run `oodbench split {dataset}`"
        )
    split = load_split_file(path, known_ids)
    if split.dataset != dataset:
        raise CorruptFileError(f"{path}: file says dataset {split.dataset!r}, expected {dataset!r}")
    return split
