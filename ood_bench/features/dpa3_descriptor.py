"""The pretrained DPA3 descriptor, frozen and pooled over atoms ([mean | sum]): the features of
closed-form linear probing (``dpa3-frozen``). They depend on the checkpoint, so its sha256 keys
the cache and enters the run fingerprint; any deepmd checkpoint works (the stand-in here,
DPA-3.1-3M where it can be downloaded)."""

from __future__ import annotations

from .base import FEATURIZERS, FeatureContext, Featurizer


def _context(spec, kind: str) -> FeatureContext:
    from ..backends.deepmd.backend import default_pretrained
    from ..backends.deepmd.pretrained import load_pretrained

    pre = load_pretrained(spec.pretrained or default_pretrained(spec.preset))
    head = None
    if pre.branches != ["Default"]:
        head = pre.meta.get("aux_branch_for", {}).get(kind) or pre.branches[0]
    return FeatureContext(cache_key=pre.sha256[:16], options={"checkpoint": str(pre.path), "head": head},
                          identity={"pretrained_sha256": pre.sha256, "descriptor_head": head},
                          record={"pretrained": pre.record(head)})


def _compute(structures, ids, options):
    from ..backends.deepmd.predict import pooled_descriptors
    from ..progress import progress_bar

    with progress_bar(transient=True) as bar:
        task = bar.add_task("pretrained descriptors", total=len(ids))
        return pooled_descriptors(options["checkpoint"], options["head"], structures, list(ids),
                                  progress=lambda n: bar.advance(task, n))


FEATURIZERS.add("dpa3-descriptor", Featurizer(
    name="dpa3-descriptor",
    summary="pretrained DPA3 descriptor (deepmd DeepEval.eval_descriptor), [mean | sum] over atoms",
    kinds=("molecules", "crystals"),
    settings={"source": "deepmd.infer.DeepEval.eval_descriptor", "pooling": ["mean", "sum"],
              "implementation": "ood_bench.backends.deepmd.predict.pooled_descriptors/1"},
    compute=_compute, context=_context, libraries=("deepmd-kit", "torch"),
))
