"""``oodbench analyze collapse``: does fine-tuning collapse the pretrained representation?

For the selected runs (result records), on the same structures of each run's fold:

* node DB: t-SNE (2-D) of per-atom descriptors of up to ``max_per_class`` atoms per class
  (element + covalent neighbours) of the OOD test set, Davies-Bouldin index of the classes;
  reported as the ratio to the pretrained model's DB (1 = as separated as pretrained, >1 = blurred);
* edge DB: the same for DPA3 edge embeddings of C-H and C-O pairs (near/middle/far);
* W1: exact 1-Wasserstein distance between pretrained and fine-tuned descriptors of the same
  ``w1_samples`` atoms, per evaluation set (train, ID, OOD).

Writes ``collapse.md``, ``collapse.json`` and ``figures/*.png`` under the output folder.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CorruptFileError, DataMissingError, OodBenchError, UsageError
from ..records import RunKey
from ..strategies import STRATEGIES
from . import labels as lab
from .metrics import davies_bouldin, tsne_2d, wasserstein1

if TYPE_CHECKING:
    from ..splits.schema import SplitSet

log = logging.getLogger(__name__)

FORMAT = "oodbench-collapse/1"
KEY_FIELDS = ("dataset", "split", "fold", "model", "strategy", "seed", "train_fraction", "property")
SET_LABELS = {"train": "train", "id_test": "ID", "ood_test": "OOD", "test": "test (OOD)"}


# --- selecting runs ---------------------------------------------------------------------------

def parse_selector(text: str | None) -> dict[str, set[str]]:
    """``"dataset=qm9,property=gap,strategy=ft|mft"`` -> {field: allowed values}; '' or 'all' -> {}."""
    text = (text or "").strip()
    if text in ("", "all", "*"):
        return {}
    out: dict[str, set[str]] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise UsageError(f"bad --runs filter '{part}': use key=value, e.g. dataset=qm9,strategy=ft|mft")
        k, v = (s.strip() for s in part.split("=", 1))
        if k not in KEY_FIELDS:
            raise UsageError(f"unknown --runs key '{k}'; keys: {', '.join(KEY_FIELDS)}")
        out.setdefault(k, set()).update(x.strip() for x in v.split("|") if x.strip())
    return out


def _matches(value: Any, allowed: set[str]) -> bool:
    if isinstance(value, float):
        return any(_float_eq(value, a) for a in allowed)
    return str(value) in allowed


def _float_eq(value: float, text: str) -> bool:
    try:
        return math.isclose(value, float(text), rel_tol=1e-9)
    except ValueError:
        return False


def select_records(records: Sequence[dict], filters: dict[str, set[str]]) -> list[dict]:
    picked = []
    for rec in records:
        key = RunKey.from_dict(rec["key"]).to_dict()
        if all(_matches(key[k], allowed) for k, allowed in filters.items()):
            picked.append(rec)
    return sorted(picked, key=lambda r: (_strategy_rank(r["key"]["strategy"]), RunKey.from_dict(r["key"])))


def _strategy_rank(name: str) -> tuple[int, str]:
    return (STRATEGIES.get(name).order if name in STRATEGIES else 1000, name)


# --- progress ---------------------------------------------------------------------------------

class Reporter:
    """Progress callbacks; the CLI passes a rich-backed one, tests the silent default."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def note(self, text: str) -> None:
        log.info(text)

    def warn(self, text: str) -> None:
        log.warning(text)


class RichReporter(Reporter):
    def __init__(self, progress) -> None:
        self.progress = progress

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        tid = self.progress.add_task(description, total=max(total, 1))
        try:
            yield lambda n: self.progress.advance(tid, n)
        finally:
            self.progress.update(tid, completed=max(total, 1))

    def note(self, text: str) -> None:
        self.progress.console.print(f"[yellow]note:[/yellow] {text}")

    def warn(self, text: str) -> None:
        self.progress.console.print(f"[yellow]warning:[/yellow] {text}", soft_wrap=True, highlight=False)


# --- checking the model files -----------------------------------------------------------------

def check_model_files(records: Sequence[dict]) -> list[str]:
    """Each record's model file must be the file its run saved (``training.model_sha256``).

    A missing model file or a different sha256 is an error naming the record (rerun that run with
    ``--force``): an analysis of another model would be reported as this run's. Records from before
    oodbench kept the hash (legacy) are not refused: they come back as warnings."""
    from ..io_utils import sha256_file

    warnings = []
    for rec in records:
        training = rec.get("training") or {}
        key = RunKey.from_dict(rec["key"])
        where = rec.get("_path") or key.label()
        model_file = training.get("model_file")
        path = Path(rec["_path"]).parent / (model_file or "model.pt") if rec.get("_path") else None
        expected = training.get("model_sha256")
        if not expected:
            if model_file and path is not None and path.exists():
                warnings.append(f"record {where} names no training.model_sha256 (made before oodbench kept it): "
                                f"its model file {path.name} is used unverified")
            continue
        redo = f"rerun that run ({key.label()}) with `oodbench run ... --force`"
        if path is None or not path.is_file():
            raise DataMissingError(f"record {where}: its model file {path or model_file} is missing; {redo}")
        got = sha256_file(path)
        if got != expected:
            raise CorruptFileError(f"record {where}: model file {path.name} has sha256 {got[:16]}..., the record "
                                   f"names {expected[:16]}... (not the model this run saved); {redo}")
    return warnings


# --- planning ---------------------------------------------------------------------------------

@dataclass
class ModelRef:
    label: str
    path: Path
    head: str | None


@dataclass
class RunEntry:
    record: dict
    key: RunKey
    model: ModelRef
    train_ids: list


@dataclass
class Group:
    """Runs compared on the same structures (one dataset/split/fold) against one pretrained model."""

    dataset: str
    split: str
    fold: str
    property: str
    split_file: str
    pretrained: dict
    pretrained_model: ModelRef
    runs: list[RunEntry] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"{self.dataset}-{self.property or 'target'}-{self.split}-fold{self.fold}"


def _pretrained_ref(pre: dict) -> ModelRef:
    from ..backends.deepmd.pretrained import load_pretrained

    path = Path(pre["path"])
    if not path.exists():
        try:
            found = load_pretrained(pre["name"])
        except OodBenchError as exc:
            raise DataMissingError(f"pretrained checkpoint {path} is gone and {pre['name']} cannot be "
                                   f"resolved here ({exc})") from None
        if pre.get("sha256") and found.sha256 != pre["sha256"]:
            raise DataMissingError(f"pretrained checkpoint {path} is gone; {found.path} has a different sha256")
        path = found.path
    head = pre.get("branch")
    if not head:
        branches = load_pretrained(str(path)).branches
        head = None if branches == ["Default"] else branches[0]
    return ModelRef(f"Pretrained ({pre['name']})", path, head)


def _train_ids(fold_train: list, key: RunKey) -> list:
    from ..runner.execute import subsample_ids

    return list(subsample_ids(fold_train, key.train_fraction, key.seed))


def _run_label(rec: dict, key: RunKey, multi: bool) -> str:
    name = rec.get("config", {}).get("strategy_label") or key.strategy.upper()
    extra = ([f"seed {key.seed}"] if multi else []) + \
        ([f"frac {key.train_fraction:g}"] if key.train_fraction != 1 else [])
    return f"{name} ({', '.join(extra)})" if extra else name


def plan_groups(records: Sequence[dict], reporter: Reporter) -> tuple[list[Group], list[str]]:
    """Group runs by (dataset, split, fold, pretrained checkpoint); attach scratch runs to the
    pretrained model the other runs of the selection use. Returns groups and notes."""
    notes: list[str] = []
    groups: dict[tuple, Group] = {}
    scratch: list[dict] = []
    for rec in records:
        key = RunKey.from_dict(rec["key"])
        if rec.get("pretrained") is None:
            scratch.append(rec)
            continue
        try:
            pre_ref = _pretrained_ref(rec["pretrained"])
        except OodBenchError as exc:
            notes.append(f"skipped {key.label()}: {exc}")
            continue
        gkey = (key.dataset, key.split, key.fold, key.property, str(pre_ref.path))
        if gkey not in groups:
            groups[gkey] = Group(key.dataset, key.split, key.fold, key.property,
                                 rec.get("data", {}).get("split_file", ""), dict(rec["pretrained"]), pre_ref)
        groups[gkey].runs.append(_entry(rec, key, notes))
    for rec in scratch:
        key = RunKey.from_dict(rec["key"])
        same = [g for g in groups.values() if (g.dataset, g.split, g.fold, g.property)
                == (key.dataset, key.split, key.fold, key.property)]
        if same:
            target = same[0]
        elif groups:
            first = next(iter(groups.values()))
            gkey = (key.dataset, key.split, key.fold, key.property, str(first.pretrained_model.path))
            target = groups.setdefault(gkey, Group(key.dataset, key.split, key.fold, key.property,
                                                   rec.get("data", {}).get("split_file", ""),
                                                   first.pretrained, first.pretrained_model))
        else:
            notes.append(f"skipped {key.label()}: scratch run and no run in the selection names a "
                         "pretrained model to compare with")
            continue
        target.runs.append(_entry(rec, key, notes))
    out = []
    for g in groups.values():
        g.runs = [r for r in g.runs if r.model is not None]
        if g.runs:
            g.runs.sort(key=lambda r: (_strategy_rank(r.key.strategy), r.key))
            out.append(g)
    for n in notes:
        reporter.note(n)
    return out, notes


def _entry(rec: dict, key: RunKey, notes: list[str]) -> RunEntry:
    training = rec.get("training", {})
    model_file = training.get("model_file")
    path = Path(rec["_path"]).parent / model_file if model_file and rec.get("_path") else None
    if path is None or not path.exists():
        notes.append(f"skipped {key.label()}: no fine-tuned model file beside its record "
                     f"({path or 'record has no training.model_file'}); rerun it to keep one")
        return RunEntry(rec, key, None, [])  # type: ignore[arg-type]
    return RunEntry(rec, key, ModelRef("", path, training.get("eval_head")), [])


# --- sampling ---------------------------------------------------------------------------------

@dataclass
class Samples:
    """What to read from every model of a group, as rows into ``ids``."""

    ids: list
    node_struct: np.ndarray
    node_atom: np.ndarray
    node_label: list[str]
    edge_struct: np.ndarray
    edge_i: np.ndarray
    edge_j: np.ndarray
    edge_dist: np.ndarray
    edge_label: list[str]
    w1: dict[tuple, tuple[np.ndarray, np.ndarray]]  # (set name, ids tuple) -> (struct rows, atoms)


class _Ids:
    def __init__(self) -> None:
        self.ids: list = []
        self.row: dict = {}

    def __call__(self, sid) -> int:
        if sid not in self.row:
            self.row[sid] = len(self.ids)
            self.ids.append(sid)
        return self.row[sid]


def ood_set_name(test_sets: Sequence[str]) -> str:
    named = [t for t in test_sets if "ood" in t.lower()]
    return named[0] if named else list(test_sets)[-1]


def draw_samples(structures, ood_ids: list, w1_sets: dict[tuple, list], max_per_class: int,
                 w1_samples: int, seed: int, with_edges: bool = True) -> Samples:
    """Seeded, model-independent samples: per-class atoms and edges of the OOD set, and
    ``w1_samples`` uniformly drawn atoms of each W1 set."""
    rows = _Ids()
    a_struct, a_atom, a_label = [], [], []
    e_struct, e_i, e_j, e_d, e_label = [], [], [], [], []
    for sid in ood_ids:
        z, pos, cell = structures.atoms_of(sid)
        labels = lab.node_labels(z, pos, cell)
        a_struct.extend([sid] * len(z))
        a_atom.extend(range(len(z)))
        a_label.extend(labels)
        if with_edges:
            edges = lab.classified_edges(z, pos, cell)
            e_struct.extend([sid] * len(edges.i))
            e_i.extend(edges.i.tolist())
            e_j.extend(edges.j.tolist())
            e_d.extend(edges.dist.tolist())
            e_label.extend(edges.label)
    pick_a = lab.sample_per_class(a_label, max_per_class, [seed, 1])
    pick_e = lab.sample_per_class(e_label, max_per_class, [seed, 2])
    w1: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for n, ((set_name, ids_t), ids) in enumerate(sorted(w1_sets.items(), key=lambda kv: kv[0][0])):
        nat = np.array([len(structures.atoms_of(s)[0]) for s in ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(nat)])
        flat = lab.sample_uniform(int(offsets[-1]), w1_samples, [seed, 3, n])
        srow = np.searchsorted(offsets, flat, side="right") - 1
        w1[(set_name, ids_t)] = (np.array([rows(ids[r]) for r in srow], dtype=np.int64),
                                 (flat - offsets[srow]).astype(np.int64))
    return Samples(
        ids=rows.ids,
        node_struct=np.array([rows(a_struct[k]) for k in pick_a], dtype=np.int64),
        node_atom=np.array([a_atom[k] for k in pick_a], dtype=np.int64),
        node_label=[a_label[k] for k in pick_a],
        edge_struct=np.array([rows(e_struct[k]) for k in pick_e], dtype=np.int64),
        edge_i=np.array([e_i[k] for k in pick_e], dtype=np.int64),
        edge_j=np.array([e_j[k] for k in pick_e], dtype=np.int64),
        edge_dist=np.array([e_d[k] for k in pick_e], dtype=np.float64),
        edge_label=[e_label[k] for k in pick_e],
        w1=w1,
    )


# --- running one group ------------------------------------------------------------------------

@dataclass
class ModelReps:
    nodes: np.ndarray  # sampled OOD atoms
    edges: np.ndarray  # sampled OOD edges (NaN where the model has no such edge)
    edge_found: np.ndarray
    w1: dict[tuple, np.ndarray]


def _read(ref: ModelRef, structures, samples: Samples, label: str, reporter: Reporter) -> ModelReps:
    from ..backends.deepmd.representations import RepresentationModel, Requests

    w1_keys = list(samples.w1)
    a_struct = np.concatenate([samples.node_struct, *[samples.w1[k][0] for k in w1_keys]])
    a_atom = np.concatenate([samples.node_atom, *[samples.w1[k][1] for k in w1_keys]])
    try:
        model = RepresentationModel(ref.path, ref.head)
    except OodBenchError:
        raise
    except Exception as exc:  # deepmd raises assorted errors for unreadable checkpoints
        raise OodBenchError(f"cannot open {ref.path} for analysis ({type(exc).__name__}: {str(exc)[:120]})") from None
    edges_ok = model.edges_supported
    req = Requests.make(a_struct, a_atom,
                        samples.edge_struct if edges_ok else (), samples.edge_i if edges_ok else (),
                        samples.edge_j if edges_ok else (), samples.edge_dist if edges_ok else ())
    try:
        with reporter.task(f"{label}: representations", len(req.structures_needed())) as advance:
            reps = model.evaluate(structures, samples.ids, req, progress=advance)
    finally:
        model.close()
    n = len(samples.node_struct)
    w1, start = {}, n
    for k in w1_keys:
        m = len(samples.w1[k][0])
        w1[k] = reps.nodes[start:start + m]
        start += m
    edges = reps.edges if edges_ok else np.full((len(samples.edge_struct), 0), np.nan)
    found = reps.edge_found if edges_ok else np.zeros(len(samples.edge_struct), dtype=bool)
    return ModelReps(reps.nodes[:n], edges, found, w1)


def _db(points: np.ndarray, labels: Sequence[str], seed: int) -> tuple[float | None, np.ndarray | None, str]:
    """(DB index, 2-D map, problem) of labelled points; None when it cannot be computed."""
    labels = list(labels)
    counts: dict[str, int] = {}
    for x in labels:
        counts[x] = counts.get(x, 0) + 1
    if len(counts) < 2 or len(labels) < 4 or len(labels) <= len(counts):
        return None, None, f"too few points ({len(labels)}) or classes ({len(counts)})"
    emb = tsne_2d(points, seed)
    return davies_bouldin(emb, labels), emb, ""


def analyze_group(group: Group, structures, fold, test_sets: list[str], max_per_class: int,
                  w1_samples: int, seed: int, reporter: Reporter) -> dict[str, Any]:
    """Everything for one group: samples, representations of every model, DB, W1, t-SNE maps."""
    ood = ood_set_name(test_sets)
    ood_ids = [i for i in fold.tests[ood] if i in structures]
    run_sets = _run_sets(group, structures, fold, test_sets)
    w1_sets = {k: list(k[1]) for sets in run_sets for k in sets.values()}
    samples = draw_samples(structures, ood_ids, w1_sets, max_per_class, w1_samples, seed)
    labels_by = _model_labels(group)
    refs = {"pretrained": group.pretrained_model} | {f"run{n}": r.model for n, r in enumerate(group.runs)}
    reps = {name: _read(ref, structures, samples, labels_by[name], reporter) for name, ref in refs.items()}
    found = np.logical_and.reduce([r.edge_found for r in reps.values()])  # edges every model has: same pairs
    e_labels = [x for x, f in zip(samples.edge_label, found, strict=True) if f]
    db, maps, problems = _db_and_maps(group.slug, reps, samples.node_label, found, e_labels, seed, reporter)
    runs_out = []
    with reporter.task(f"{group.slug}: 1-Wasserstein", len(group.runs) * (1 + len(test_sets))) as advance:
        for n, run in enumerate(group.runs):
            name = f"run{n}"
            w1, notes = _w1_of_run(reps["pretrained"], reps[name], run_sets[n], advance)
            if not STRATEGIES.get(run.key.strategy).needs_pretrained:
                notes.append(f"{run.key.strategy}: compared with the pretrained model of the other runs "
                             "(never initialised from it)")
            n_w1 = {s: int(len(reps["pretrained"].w1[k])) for s, k in run_sets[n].items()}
            runs_out.append(_run_row(run, labels_by[name], db[name], db["pretrained"], w1, n_w1, notes))
    return {
        "dataset": group.dataset, "split": group.split, "fold": group.fold, "property": group.property,
        "split_file": group.split_file, "ood_set": ood, "sets": ["train", *test_sets],
        "pretrained": {k: group.pretrained.get(k) for k in ("name", "path", "sha256", "branch", "stand_in")}
        | {"head": group.pretrained_model.head},
        "db_pretrained": db["pretrained"],
        "n_node_points": int(len(samples.node_label)), "node_classes": _counts(samples.node_label),
        "n_edge_points": int(found.sum()), "edge_classes": _counts(e_labels),
        "n_edges_dropped": int((~found).sum()),
        "problems": problems,
        "runs": runs_out,
        "_maps": {"labels": labels_by, "node_labels": samples.node_label, "edge_labels": e_labels,
                  "maps": maps, "db": db},
    }


def _run_sets(group: Group, structures, fold, test_sets: list[str]) -> list[dict[str, tuple]]:
    """Per run, the sets whose drift W1 measures: its own training ids (a subset run trained on
    fewer) and every test set, as (name, ids) keys so runs with the same sets share samples."""
    out = []
    for run in group.runs:
        run.train_ids = [i for i in _train_ids(fold.train, run.key) if i in structures]
        sets = {"train": ("train", tuple(run.train_ids))}
        sets |= {t: (t, tuple(i for i in fold.tests[t] if i in structures)) for t in test_sets}
        out.append(sets)
    return out


def _model_labels(group: Group) -> dict[str, str]:
    """Display label per model slot ("pretrained", "run0", ...); seeds are named only when two runs
    share a strategy."""
    multi = len({r.key.strategy for r in group.runs}) < len(group.runs)
    return {"pretrained": group.pretrained_model.label} | {
        f"run{n}": _run_label(r.record, r.key, multi) for n, r in enumerate(group.runs)}


def _db_and_maps(slug: str, reps: dict[str, ModelReps], node_labels: list[str], found: np.ndarray,
                 e_labels: list[str], seed: int, reporter: Reporter) -> tuple[dict, dict, list[str]]:
    """Davies-Bouldin index and t-SNE map of every model's node and edge points, and what could not
    be computed (said once per kind, not once per model)."""
    maps: dict[str, dict[str, Any]] = {}
    db: dict[str, dict[str, float | None]] = {}
    problems: list[str] = []
    with reporter.task(f"{slug}: t-SNE + Davies-Bouldin", 2 * len(reps)) as advance:
        for name, r in reps.items():
            db_n, map_n, why_n = _db(r.nodes, node_labels, seed)
            advance(1)
            if r.edges.shape[1] and found.any():
                db_e, map_e, why_e = _db(r.edges[found], e_labels, seed)
            else:
                db_e, map_e, why_e = None, None, "no edge embeddings (not a DPA3 model, or no C-H/C-O pairs)"
            advance(1)
            db[name] = {"node": db_n, "edge": db_e}
            maps[name] = {"node": map_n, "edge": map_e}
            for what, why in (("node", why_n), ("edge", why_e)):
                if why and f"{what}: {why}" not in problems:
                    problems.append(f"{what}: {why}")
    return db, maps, problems


def _w1_of_run(pre: ModelReps, mine: ModelReps, sets: dict[str, tuple],
               advance: Callable[[int], None]) -> tuple[dict[str, float | None], list[str]]:
    """W1 between the pretrained and this run's atom representations on each set (None where
    undefined), with a note when the two representations differ in size."""
    w1: dict[str, float | None] = {}
    notes: list[str] = []
    for set_name, k in sets.items():
        a, b = pre.w1[k], mine.w1[k]
        if a.shape[1] != b.shape[1]:
            w1[set_name] = None
            note = f"W1 undefined: representation sizes differ (pretrained {a.shape[1]}, this model {b.shape[1]})"
            if note not in notes:
                notes.append(note)
        else:
            w1[set_name] = wasserstein1(a, b) if len(a) else None
        advance(1)
    return w1, notes


def _run_row(run: RunEntry, label: str, db: dict, db_pre: dict, w1: dict, n_w1: dict, notes: list[str]) -> dict:
    """One run's line of collapse.json."""
    ratio = {what: db[what] / db_pre[what] if db[what] is not None and db_pre[what] else None
             for what in ("node", "edge")}
    config = run.record.get("config", {})
    return {
        "key": run.key.to_dict(), "label": label,
        "strategy": run.key.strategy,
        "strategy_label": config.get("strategy_label") or run.key.strategy,
        "preset": config.get("preset"),
        "model_file": str(run.model.path), "eval_head": run.model.head,
        "db_node": db["node"], "db_edge": db["edge"],
        "db_ratio_node": ratio["node"], "db_ratio_edge": ratio["edge"],
        "w1": w1, "n_w1": n_w1,
        "notes": notes,
    }


def _counts(labels: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in labels:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: _class_sort(kv[0])))


def _class_sort(label: str) -> tuple:
    """Nodes by element then neighbour count ('H1', 'C2', 'C3'...); edges by pair then near, middle, far."""
    from ase.data import atomic_numbers

    if " " in label:
        pair, band = label.split(" ", 1)
        a, _, b = pair.partition("-")
        bands = ("near", "middle", "far")
        return (atomic_numbers.get(a, 999), atomic_numbers.get(b, 999),
                bands.index(band) if band in bands else 9, label)
    sym = label.rstrip("0123456789")
    count = label[len(sym):]
    return (atomic_numbers.get(sym, 999), int(count) if count else 0, 0, label)


# --- the whole analysis -----------------------------------------------------------------------

def run_collapse(records: Sequence[dict], out_dir: Path, data_dir: str | None = None,
                 splits_dir: str | None = None, max_per_class: int = 2000, w1_samples: int = 5000,
                 seed: int = 0, selector: str = "", reporter: Reporter | None = None,
                 figures: bool = True, results_dir: str | Path | None = None) -> dict[str, Any]:
    """Analyse the given (already selected) records; write collapse.{md,json} and figures."""
    from ..datasets import load_dataset

    reporter = reporter or Reporter()
    if max_per_class < 2 or w1_samples < 1:
        raise UsageError("--max-per-class must be >= 2 and --w1-samples >= 1")
    unverified = check_model_files(records)  # before any computation: a swapped model is refused
    for text in unverified:
        reporter.warn(text)
    groups, notes = plan_groups(records, reporter)
    if not groups:
        raise OodBenchError("no analysable runs in the selection: " + ("; ".join(notes) or "nothing selected"))
    notes = [*unverified, *notes]
    results = []
    for g in groups:
        ds = load_dataset(g.dataset, data_dir)
        split = _group_split(g, splits_dir)
        fold = split.fold(g.fold)
        results.append(analyze_group(g, ds.structures, fold, list(split.test_sets), max_per_class,
                                     w1_samples, seed, reporter))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_paths = _plot_groups(results, out_dir) if figures else {}
    body = {
        "format": FORMAT,
        "selector": selector,
        "results_dir": str(results_dir) if results_dir else None,
        "params": {"max_per_class": max_per_class, "w1_samples": w1_samples, "seed": seed},
        "notes": notes,
        "groups": [{k: v for k, v in res.items() if k != "_maps"} | {"figures": fig_paths.get(_slug(res), [])}
                   for res in results],
        "summary": summarize(results),
    }
    from ..paths import portable, portable_roots

    body = portable(json.loads(json.dumps(body, default=_json_default)), portable_roots(results=results_dir))
    (out_dir / "collapse.json").write_text(json.dumps(body, indent=1) + "\n")
    (out_dir / "collapse.md").write_text(render_markdown(body))
    return body


def _group_split(g: Group, splits_dir: str | None) -> SplitSet:
    """The split the group's records name: their own split file if it is still there, else the canonical one."""
    from ..splits import load_split, load_split_file

    split_path = Path(g.split_file) if g.split_file else None
    if split_path is not None and split_path.exists():
        return load_split_file(split_path)
    return load_split(g.dataset, g.split, splits_dir)


def _plot_groups(results: list[dict], out_dir: Path) -> dict[str, list[str]]:
    """Each group's figures under ``out_dir/figures``, as paths relative to ``out_dir``."""
    from .plots import plot_group

    return {_slug(res): [str(p.relative_to(out_dir)) for p in plot_group(res, out_dir / "figures", _slug(res))]
            for res in results}


def _slug(res: dict) -> str:
    return f"{res['dataset']}-{res['property'] or 'target'}-{res['split']}-fold{res['fold']}"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _mean_std(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals)) if len(vals) > 1 else None, "n": len(vals)}


def summarize(results: Sequence[dict]) -> list[dict[str, Any]]:
    """Per (dataset, property, split, strategy, preset): mean (and std) over seeds/folds/fractions."""
    rows: dict[tuple, dict[str, Any]] = {}
    for res in results:
        for run in res["runs"]:
            k = (res["dataset"], res["property"], res["split"], run["strategy"], run["preset"])
            row = rows.setdefault(k, {"dataset": k[0], "property": k[1], "split": k[2], "strategy": k[3],
                                      "preset": k[4], "strategy_label": run["strategy_label"],
                                      "_vals": {}, "runs": 0})
            row["runs"] += 1
            for name, v in (("db_ratio_node", run["db_ratio_node"]), ("db_ratio_edge", run["db_ratio_edge"]),
                            *((f"w1_{s}", w) for s, w in run["w1"].items())):
                row["_vals"].setdefault(name, []).append(v)
    out = []
    for k in sorted(rows, key=lambda k: (k[0], k[1], k[2], _strategy_rank(k[3]), str(k[4]))):
        row = rows[k]
        vals = row.pop("_vals")
        row.update({name: _mean_std(v) for name, v in vals.items()})
        out.append(row)
    return out


def _fmt(cell: dict[str, Any] | None, digits: int = 2) -> str:
    if not cell or cell.get("mean") is None:
        return "-"
    text = f"{cell['mean']:.{digits}f}"
    if cell.get("std") is not None:
        text += f" ± {cell['std']:.{digits}f}"
    return text


def render_markdown(body: dict[str, Any]) -> str:
    L = _intro(body)
    sets = list(dict.fromkeys(s for g in body["groups"] for s in g["sets"]))
    by_split: dict[tuple, list[dict]] = {}
    for row in body["summary"]:
        by_split.setdefault((row["dataset"], row["property"], row["split"]), []).append(row)
    for where, rows in by_split.items():
        mine = [g for g in body["groups"] if (g["dataset"], g["property"], g["split"]) == where]
        L += _split_section(where, rows, mine, sets)
    L += ["## Per run", ""]
    for g in body["groups"]:
        L += _group_section(g)
    if body["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in body["notes"]] + [""]
    return "\n".join(L)


def _intro(body: dict[str, Any]) -> list[str]:
    """Title, the command that made the page, and what DB ratio and W1 mean."""
    p = body["params"]
    return [
        "# Representation-collapse analysis",
        "",
        "Does fine-tuning collapse the pretrained representation? (paper Sections 2.2-2.4, Fig. 2(d-i), "
        "Table 2, Supplementary D.1). Made by `oodbench analyze collapse"
        + (f" --runs \"{body['selector']}\"" if body.get("selector") else "")
        + f" --max-per-class {p['max_per_class']} --w1-samples {p['w1_samples']} --seed {p['seed']}`; "
        "method and how to read it: [docs/analysis.md](../../docs/analysis.md)."
        + (f" Records read from `{body['results_dir']}`." if body.get("results_dir") else ""),
        "",
        "- **DB ratio** = Davies-Bouldin index of the model's 2-D t-SNE map / the pretrained model's, on "
        "the same sampled OOD-test atoms (nodes: classes = element x covalent neighbours) or C-H/C-O "
        "edges (near/middle/far). 1 = as well separated as pretrained; > 1 = classes blur (collapse).",
        "- **W1** = exact 1-Wasserstein distance between pretrained and fine-tuned per-atom descriptors of "
        "the same sampled atoms (full dimension, Euclidean cost), per evaluation set: the drift.",
        "- Values are mean ± std over the runs (seeds/folds) in each row.",
        "",
    ]


def _table_head(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]


def _split_section(where: tuple, rows: list[dict], groups: list[dict], sets: list[str]) -> list[str]:
    """One (dataset, property, split): the pretrained model, then mean ± std per strategy."""
    dataset, prop, split = where
    names = sorted({str(g["pretrained"].get("name")) for g in groups})
    L = [f"## {dataset} / {prop or 'target'} / split {split}", "",
         f"Pretrained model: {', '.join(names)}; its DB index (nodes / edges): "
         + "; ".join(f"{_num(g['db_pretrained']['node'])} / {_num(g['db_pretrained']['edge'])}" for g in groups)
         + ".", ""]
    if any(g["pretrained"].get("stand_in") for g in groups):
        L += ["**Stand-in pretrained model** (`oodbench pretrain`, not DPA-3.1-3M): these numbers show the "
              "pipeline works and how the strategies compare at this scale; they are not comparable to the "
              "paper's.", ""]
    L += _table_head(["Strategy", "preset", "runs", "DB ratio nodes", "DB ratio edges",
                      *[f"W1 {SET_LABELS.get(s, s)}" for s in sets]])
    for row in rows:
        cells = [row["strategy_label"], str(row["preset"]), str(row["runs"]),
                 _fmt(row.get("db_ratio_node")), _fmt(row.get("db_ratio_edge")),
                 *[_fmt(row.get(f"w1_{s}"), 3) for s in sets]]
        L.append("| " + " | ".join(cells) + " |")
    return L + [""]


def _group_section(g: dict[str, Any]) -> list[str]:
    """One fold's runs against the pretrained model, its figures, and its notes (each said once)."""
    L = [f"### {g['dataset']} / {g['property'] or 'target'} / {g['split']} / fold {g['fold']}", "",
         f"OOD set for the maps: `{g['ood_set']}`; {g['n_node_points']} atoms in "
         f"{len(g['node_classes'])} classes, {g['n_edge_points']} edges in {len(g['edge_classes'])} classes"
         + (f" ({g['n_edges_dropped']} sampled edges dropped: missing from some model's neighbour list)"
            if g["n_edges_dropped"] else "") + ".", ""]
    L += _table_head(["Run", "DB nodes", "DB edges", "ratio nodes", "ratio edges",
                      *[f"W1 {SET_LABELS.get(s, s)}" for s in g["sets"]]])
    L.append("| " + " | ".join(["Pretrained", _num(g["db_pretrained"]["node"]),
                                _num(g["db_pretrained"]["edge"]), "1", "1", *["0"] * len(g["sets"])]) + " |")
    for r in g["runs"]:
        L.append("| " + " | ".join([r["label"], _num(r["db_node"]), _num(r["db_edge"]),
                                    _num(r["db_ratio_node"]), _num(r["db_ratio_edge"]),
                                    *[_num(r["w1"].get(s), 3) for s in g["sets"]]]) + " |")
    L.append("")
    for fig in g.get("figures", []):
        L += [f"![{fig}]({fig})", ""]
    notes = [n for r in g["runs"] for n in r["notes"]] + [f"DB {x}" for x in g["problems"]]
    L += [f"- {n}" for n in dict.fromkeys(notes)]
    return L + ([""] if notes else [])


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
