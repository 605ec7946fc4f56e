"""Ranking definitions: a reference graph between files and personalised PageRank.

Each identifier referenced in file R and defined in file D adds an edge R -> D weighted by
how often R uses it (square-rooted, so one chatty file does not dominate), times 10 for
identifiers in focus, 0.1 for private names (``_x``) and 0.1 for names defined in many
files (``get``, ``run``: equal names are not the same symbol, so common ones are damped).
PageRank's teleport goes to the focus files (uniformly to all files when none are given).
A definition's score is the rank that flows into its file through its own edges.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from codeagent.tools.repomap.tags import Tag

DAMPING = 0.85
ITERATIONS = 40
COMMON_DEFINITIONS = 5


def _weight(name: str, focus_idents: set[str], defining_files: int) -> float:
    weight = 1.0
    if name in focus_idents:
        weight *= 10.0
    if name.startswith("_"):
        weight *= 0.1
    if defining_files > COMMON_DEFINITIONS:
        weight *= 0.1
    return weight


def build_edges(
    file_tags: dict[str, list[Tag]], focus_idents: set[str]
) -> dict[str, dict[tuple[str, str], float]]:
    """source file -> {(target file, identifier): weight}."""
    defined: dict[str, set[str]] = defaultdict(set)
    used: dict[str, Counter[str]] = defaultdict(Counter)
    for path, tags in file_tags.items():
        for tag in tags:
            if tag.kind == "def":
                defined[tag.name].add(path)
            else:
                used[tag.name][path] += 1
    edges: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for name, users in used.items():
        targets = defined.get(name)
        if not targets:
            continue
        weight = _weight(name, focus_idents, len(targets))
        for source, count in users.items():
            for target in targets:
                if target != source:
                    edges[source][(target, name)] = weight * math.sqrt(count)
    return edges


def file_graph(edges: dict[str, dict[tuple[str, str], float]]) -> dict[str, dict[str, float]]:
    """The per-identifier edges summed per pair of files: what PageRank iterates over."""
    graph: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for source, targets in edges.items():
        for (target, _), weight in targets.items():
            graph[source][target] += weight
    return graph


def pagerank(
    nodes: list[str], graph: dict[str, dict[str, float]], personal: dict[str, float]
) -> dict[str, float]:
    total = sum(personal.values()) or 1.0
    teleport = (
        {node: personal.get(node, 0.0) / total for node in nodes}
        if personal
        else {n: 1 / len(nodes) for n in nodes}
    )
    out_weight = {source: sum(targets.values()) for source, targets in graph.items()}
    rank = dict(teleport)
    for _ in range(ITERATIONS):
        dangling = sum(rank[node] for node in nodes if not out_weight.get(node))
        incoming = {node: (1 - DAMPING + DAMPING * dangling) * teleport[node] for node in nodes}
        for source, targets in graph.items():
            share = DAMPING * rank[source] / out_weight[source]
            for target, weight in targets.items():
                incoming[target] += share * weight
        rank = incoming
    return rank


def rank_definitions(
    file_tags: dict[str, list[Tag]], focus_files: set[str], focus_idents: set[str]
) -> list[tuple[str, Tag]]:
    """Every definition as (file, tag), best first; ties broken by path and line for determinism."""
    nodes = sorted(file_tags)
    if not nodes:
        return []
    edges = build_edges(file_tags, focus_idents)
    personal = {path: 1.0 for path in focus_files if path in file_tags}
    rank = pagerank(nodes, file_graph(edges), personal)
    out_weight = {source: sum(targets.values()) for source, targets in edges.items()}
    score: dict[tuple[str, str], float] = defaultdict(float)
    for source, targets in edges.items():
        for (target, name), weight in targets.items():
            score[(target, name)] += rank[source] * weight / out_weight[source]
    ranked = []
    for path in nodes:
        file_bonus = 1.0 if path in focus_files else 0.0
        for tag in file_tags[path]:
            if tag.kind == "def":
                value = score.get((path, tag.name), 0.0) + rank[path] * 1e-3 + file_bonus
                value += 2.0 if tag.name in focus_idents else 0.0  # asked for by name: first, used or not
                ranked.append((-value, path, tag.line, tag))
    ranked.sort(key=lambda item: item[:3])
    return [(path, tag) for _, path, _, tag in ranked]
