"""Known sha256 of dataset files, so a run can say whether its numbers came from official data."""

from __future__ import annotations

# label, sha256
KNOWN: dict[str, list[tuple[str, str]]] = {
    "matbench_dielectric": [
        ("official (MatBench figshare)", "83befa09bc2ec2f4b6143afc413157827a90e5e2e42c1eb507ccfa01bf26a1d6"),
        ("MatUQ rebuild (not byte-identical)", "361ebe975fbafb957303fd0019cae903d37b337c978996b9cb678bc599135bc1"),
    ],
    "matbench_log_gvrh": [
        ("official (MatBench figshare)", "098af941f4c663270f1fe21abf20ffad6fb85ecbfcba5786ceac03983ac29da7"),
        ("MatUQ rebuild (not byte-identical)", "61e8260df011833ff7f68e727dc414be9f7d9d615b2d6bd0305e39ae59981e36"),
    ],
    "matbench_perovskites": [
        ("official (MatBench figshare)", "4641e2417f8ec8b50096d2230864468dfa08278dc9d257c327f65d0305278483"),
        ("MatUQ rebuild (not byte-identical)", "87d1f93e0a3d49d3bc741ff1379ad687e93faee98e02a0cbae48ee2f7b27d999"),
    ],
    "qm9": [
        ("BOOM property table (133,885)", "2f0481417e2812bca69179768a14f9d40eb87b42a5808f4aef91fca4219cd987"),
    ],
}


def checksum_status(dataset: str, sha256: str, fixture: bool = False) -> str:
    """'official ...', a known copy, 'fixture subset', or 'UNVERIFIED' (warned about)."""
    if fixture:
        return "fixture subset (tests)"
    for label, digest in KNOWN.get(dataset, []):
        if digest == sha256:
            return label
    return "UNVERIFIED: sha256 matches no known release"


def is_official(dataset: str, sha256: str) -> bool:
    return any(d == sha256 and lbl.startswith("official") for lbl, d in KNOWN.get(dataset, []))
