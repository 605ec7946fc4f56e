"""Ranking definitions: a reference graph between files and personalised PageRank.

A file R that references an identifier defined in files D1..Dk links R -> each Di with
weight w * sqrt(uses in R) / k: the reference means one of them, so the weight is shared
(and square-rooted so one chatty file does not dominate). ``w`` is 10 for identifiers in
focus, 0.1 for private names (``_x``) and 0.1 for names defined in more than
``COMMON_DEFINITIONS`` files (``get``, ``run``: equal names are not the same symbol). A
file's references to its own definitions are not edges.

The graph is never expanded into file pairs, which is quadratic for common names: each
PageRank step sends rank from files to identifiers (one term per file and identifier it
uses) and from identifiers to their defining files (one term per definition), so a step is
linear in the number of tags. The teleport goes to the focus files and to the files that
define focus identifiers, uniformly to all files when there are none. A definition's score
is the rank that flows into it through its identifier; focus identifiers come first, used
or not, and a file's own rank breaks ties, so unreferenced definitions of central files
come before those of peripheral ones.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from codeagent.tools.repomap.tags import Tag

# Low for PageRank (the classic value is 0.85): a definition two hops from the focus weighs a
# quarter of one next door, and dense clusters far from it (vendored stubs) soak up little rank.
DAMPING = 0.5
MAX_ITERATIONS = 100
TOLERANCE = 1e-10  # L1 change of the rank vector at which iteration stops
COMMON_DEFINITIONS = 5
FOCUS_BONUS = 2.0  # above any flow score (all flow sums to at most 1)
TIE_BREAK = 1e-3  # how much a file's own rank counts for its definitions


@dataclass(slots=True)
class RefGraph:
    """Files and identifiers by index; ``edges`` are (file, identifier, weight / file's out-weight)."""

    files: list[str]
    definers: list[list[int]] = field(default_factory=list)  # identifier -> files defining it
    names: dict[str, int] = field(default_factory=dict)  # identifier -> index
    edges: list[tuple[int, int, float]] = field(default_factory=list)
    own: dict[tuple[int, int], float] = field(default_factory=dict)  # (file, identifier) it also defines
    dangling: list[int] = field(default_factory=list)  # files with no out-edges


def _weight(name: str, focus_idents: set[str], defining_files: int) -> float:
    weight = 10.0 if name in focus_idents else 1.0
    if name.startswith("_"):
        weight *= 0.1
    if defining_files > COMMON_DEFINITIONS:
        weight *= 0.1
    return weight


def _collect(
    files: list[str], file_tags: dict[str, list[Tag]]
) -> tuple[dict[str, list[int]], list[tuple[int, str, int]]]:
    """Which files define each identifier (in file order), and (file, identifier, uses) triples."""
    defined: dict[str, list[int]] = {}
    used: list[tuple[int, str, int]] = []
    for i, path in enumerate(files):
        tags = file_tags[path]
        for name in {tag.name for tag in tags if tag.kind == "def"}:
            defined.setdefault(name, []).append(i)
        counts = Counter([tag.name for tag in tags if tag.kind == "ref"])
        used.extend((i, name, count) for name, count in counts.items())
    return defined, used


def build_graph(files: list[str], file_tags: dict[str, list[Tag]], focus_idents: set[str]) -> RefGraph:
    defined, used = _collect(files, file_tags)
    definer_sets = {name: set(spots) for name, spots in defined.items() if len(spots) > 1}
    graph = RefGraph(files)
    raw: list[tuple[int, int, float]] = []
    out = [0.0] * len(files)
    for source, name, count in used:
        targets = defined.get(name, [])
        own = source in definer_sets[name] if len(targets) > 1 else targets == [source]
        if len(targets) == own:  # undefined, or defined only here
            continue
        ident = graph.names.setdefault(name, len(graph.definers))
        if ident == len(graph.definers):
            graph.definers.append(targets)
        weight = _weight(name, focus_idents, len(targets)) * math.sqrt(count)
        raw.append((source, ident, weight))
        out[source] += weight * (len(targets) - own) / len(targets)
        if own:
            graph.own[(source, ident)] = 0.0
    _normalise(graph, raw, out)
    return graph


def _normalise(graph: RefGraph, raw: list[tuple[int, int, float]], out: list[float]) -> None:
    """Divide weights by the source's out-weight, so each file sends exactly its rank."""
    graph.edges = [(source, ident, weight / out[source]) for source, ident, weight in raw]
    for source, ident, share in graph.edges:
        if (source, ident) in graph.own:
            graph.own[(source, ident)] = share
    graph.dangling = [i for i, weight in enumerate(out) if weight == 0.0]


def _flow(graph: RefGraph, rank: list[float]) -> list[float]:
    """Rank each identifier receives from the files that use it."""
    flow = [0.0] * len(graph.definers)
    for source, ident, share in graph.edges:
        flow[ident] += rank[source] * share
    return flow


def pagerank(graph: RefGraph, teleport: list[float]) -> list[float]:
    rank = list(teleport)
    for _ in range(MAX_ITERATIONS):
        flow = _flow(graph, rank)
        base = 1.0 - DAMPING + DAMPING * sum(rank[i] for i in graph.dangling)
        new = [base * t for t in teleport]
        for ident, targets in enumerate(graph.definers):
            share = DAMPING * flow[ident] / len(targets)
            for target in targets:
                new[target] += share
        for (source, ident), share in graph.own.items():  # a file does not feed itself
            new[source] -= DAMPING * rank[source] * share / len(graph.definers[ident])
        change = sum(abs(a - b) for a, b in zip(new, rank, strict=True))
        rank = new
        if change < TOLERANCE:
            break
    return rank


def _teleport(files: list[str], personal: set[str]) -> list[float]:
    chosen = [path in personal for path in files]
    count = sum(chosen)
    if not count:
        return [1.0 / len(files)] * len(files)
    return [1.0 / count if pick else 0.0 for pick in chosen]


def rank_definitions(
    file_tags: dict[str, list[Tag]], focus_files: set[str], focus_idents: set[str]
) -> list[Tag]:
    """Every definition, best first; ties broken by path and line so the order is stable."""
    files = sorted(file_tags)
    if not files:
        return []
    graph = build_graph(files, file_tags, focus_idents)
    idents = {
        t.rel_path for path in files for t in file_tags[path] if t.kind == "def" and t.name in focus_idents
    }
    rank = pagerank(graph, _teleport(files, focus_files | idents))
    flow = _flow(graph, rank)
    scored: list[tuple[float, str, int, Tag]] = []
    for i, path in enumerate(files):
        for tag in file_tags[path]:
            if tag.kind != "def":
                continue
            value = rank[i] * TIE_BREAK + (FOCUS_BONUS if tag.name in focus_idents else 0.0)
            ident = graph.names.get(tag.name)
            if ident is not None:
                own = rank[i] * graph.own.get((i, ident), 0.0)
                value += (flow[ident] - own) / len(graph.definers[ident])
            scored.append((-value, path, tag.line, tag))
    scored.sort(key=lambda item: item[:3])
    return [tag for *_, tag in scored]
