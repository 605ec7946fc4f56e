"""The definitions a gold patch changes, at the base commit, and a BM25 baseline ranker.

A patch's changed lines are read on the old side of each hunk: a removed line is itself; an
added line stands for the old line before it (the first one after it when the hunk adds at
its top), so an insertion at the end of a function counts for that function. Each such line
maps to the innermost definition around it in the base file (tags with their end lines, the
repo map's tree-sitter queries). Lines outside every definition (imports, module constants
without a tag) and files the patch creates count for nothing; a task whose patch changes no
definition has no targets and is left out of recall.

``bm25_ranking`` is the issue's baseline: Okapi BM25 (k1 1.2, b 0.75) with each definition's
whole source (nested definitions included) as a document and the issue's words as the query,
both cut by ``\\w+`` and lower-cased: no splitting of identifiers, no stemming, no stop words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from codeagent.tools.repomap.tags import Tag, extract, language_of

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")
WORD = re.compile(r"\w+")

Spot = tuple[str, int]  # (rel_path, line of the definition's name)


def changed_lines(patch: str) -> dict[str, set[int]]:
    """{old path: old-side line numbers the patch changes}; new files are left out."""
    changed: dict[str, set[int]] = {}
    path: str | None = None
    old = 0
    for line in patch.splitlines():
        if line.startswith("--- "):
            name = line[4:].split("\t")[0].strip()
            path = None if name == "/dev/null" else name.removeprefix("a/")
        elif line.startswith("+++ "):
            continue
        elif match := HUNK.match(line):
            old = int(match.group(1))
            anchor = old  # an addition at the top of the hunk stands for its first old line
        elif path is not None and line[:1] in (" ", "-", "+"):
            if line[0] == "+":
                changed.setdefault(path, set()).add(max(anchor, 1))
                continue
            if line[0] == "-":
                changed.setdefault(path, set()).add(old)
            anchor = old
            old += 1
    return changed


def innermost(tags: list[Tag], line: int) -> Tag | None:
    around = [t for t in tags if t.kind == "def" and t.line <= line <= max(t.end, t.line)]
    return max(around, key=lambda t: (t.line, -t.end)) if around else None


def targets(root: Path, patch: str) -> set[Spot]:
    """The (path, line) of every definition the patch changes, read at ``root`` (the base)."""
    found: set[Spot] = set()
    for rel, lines in changed_lines(patch).items():
        language, path = language_of(rel), root / rel
        if language is None or not path.is_file():
            continue
        tags = extract(path.read_bytes(), language, rel)
        for line in lines:
            tag = innermost(tags, line)
            if tag is not None:
                found.add((rel, tag.line))
    return found


def bm25_ranking(root: Path, file_tags: dict[str, list[Tag]], query: str) -> list[Spot]:
    docs: list[tuple[Spot, Counter[str]]] = []
    for rel, tags in file_tags.items():
        lines = (root / rel).read_text(encoding="utf-8", errors="replace").split("\n")
        for tag in tags:
            if tag.kind == "def":
                body = "\n".join(lines[tag.line - 1 : max(tag.end, tag.line)])
                docs.append(((rel, tag.line), Counter(WORD.findall(body.lower()))))
    if not docs:
        return []
    average = sum(sum(c.values()) for _, c in docs) / len(docs)
    df = Counter(word for _, counts in docs for word in counts)
    words = set(WORD.findall(query.lower()))
    scored = []
    for spot, counts in docs:
        length, score = sum(counts.values()), 0.0
        for word in words & counts.keys():
            idf = math.log(1 + (len(docs) - df[word] + 0.5) / (df[word] + 0.5))
            tf = counts[word]
            score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / average))
        if score > 0:
            scored.append((-score, spot))
    scored.sort()
    return [spot for _, spot in scored]
