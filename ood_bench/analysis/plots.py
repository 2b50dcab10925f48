"""t-SNE scatter plots like the paper's Fig. 2(d-i): one panel per model, one colour per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FAMILY_MAPS = ("Blues", "Reds", "Greens", "Purples", "Oranges", "Greys", "YlOrBr", "PuRd", "BuGn", "copper")


def _family(label: str) -> str:
    """'C4' -> 'C'; 'C-H near' -> 'C-H': classes of one element (or pair) share a colour family."""
    return label.split()[0] if " " in label else label.rstrip("0123456789")


def _colours(classes: list[str]) -> dict[str, Any]:
    """One sequential colour map per element (nodes) or pair (edges), shades within it, like the
    paper's Fig. 2: hue = species, shade = covalent environment / distance band."""
    import matplotlib

    families: dict[str, list[str]] = {}
    for c in classes:
        families.setdefault(_family(c), []).append(c)
    out = {}
    for k, (_, members) in enumerate(families.items()):
        cmap = matplotlib.colormaps[FAMILY_MAPS[k % len(FAMILY_MAPS)]]
        shades = np.linspace(0.85, 0.45, len(members)) if len(members) > 1 else [0.7]
        for c, t in zip(members, shades, strict=True):
            out[c] = cmap(float(t))
    return out


def scatter_panels(maps: list[tuple[str, np.ndarray | None]], labels: list[str], classes: list[str],
                   title: str, path: Path) -> Path | None:
    """One scatter panel per (title, 2-D map); None when no map could be made."""
    panels = [(t, m) for t, m in maps if m is not None]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = _colours(classes)
    labels_arr = np.asarray(labels)
    n = len(panels)
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    width = 3.6 * ncols + 1.6
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.6 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax, (sub, m) in zip(axes.flat, panels, strict=False):
        for c in classes:
            sel = labels_arr == c
            if sel.any():
                ax.scatter(m[sel, 0], m[sel, 1], s=3, color=colours[c], label=c, linewidths=0, alpha=0.8)
        ax.set_title(sub, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[c], label=c) for c in classes]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False, markerscale=0.8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.4 / width, 1 - 0.35 / (3.6 * nrows + 0.4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_group(res: dict[str, Any], fig_dir: Path, slug: str) -> list[Path]:
    """Node and edge t-SNE figures of one analysis group; returns the files written."""
    m = res["_maps"]
    names = ["pretrained"] + [f"run{n}" for n in range(len(res["runs"]))]
    out = []
    for what, labels, classes in (("node", m["node_labels"], list(res["node_classes"])),
                                  ("edge", m["edge_labels"], list(res["edge_classes"]))):
        maps = []
        for name in names:
            db = m["db"][name][what]
            base = m["db"]["pretrained"][what]
            sub = m["labels"][name]
            if db is not None:
                sub += f"\nDB {db:.2f}" + (f" (x{db / base:.2f})" if name != "pretrained" and base else "")
            maps.append((sub, m["maps"][name][what]))
        kind = "atomic (node)" if what == "node" else "C-H / C-O edge"
        title = (f"{kind} representations, t-SNE: {res['dataset']} {res['property']} {res['split']} "
                 f"fold {res['fold']}, {res['ood_set']}")
        p = scatter_panels(maps, labels, classes, title, fig_dir / f"collapse-{slug}-{what}s.png")
        if p is not None:
            out.append(p)
    return out
