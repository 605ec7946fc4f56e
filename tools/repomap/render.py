"""Ranked definitions as a compact outline, fitted to a token budget by binary search.

The outline groups definitions by file, files in order of their best definition, and
shows each definition's source line (indentation kept, so methods sit under their class)
with its line number. The budget is met by rendering a prefix of the ranking and binary
searching its length; tokens are estimated as characters / 4 unless a counter is given.
Rendering is not exactly monotone in the prefix length (a new file adds a header), so
the search finds a long prefix that fits, not always the longest.
"""

from __future__ import annotations

from collections.abc import Callable

from codeagent.tools.repomap.tags import Tag

TokenCounter = Callable[[str], int]


def estimate(text: str) -> int:
    return (len(text) + 3) // 4


def render(selected: list[Tag]) -> str:
    by_file: dict[str, list[Tag]] = {}
    for tag in selected:
        by_file.setdefault(tag.rel_path, []).append(tag)
    blocks = []
    for path, tags in by_file.items():
        width = len(str(max(tag.line for tag in tags)))
        rows = [f"{tag.line:>{width}}| {tag.text}" for tag in sorted(tags, key=lambda t: t.line)]
        blocks.append(f"{path}:\n" + "\n".join(dict.fromkeys(rows)))  # two tags on one line: one row
    return "\n".join(blocks)


def fit(ranked: list[Tag], max_tokens: int, count: TokenCounter = estimate) -> tuple[str, int]:
    """The rendering of the longest prefix of ``ranked`` found to fit: (text, its length)."""
    # every definition adds a row of at least one token, so more than this never fits
    low, high = 0, min(len(ranked), 2 * max(max_tokens, 0))
    while low < high:
        middle = (low + high + 1) // 2
        if count(render(ranked[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return render(ranked[:low]), low


def add_other_files(text: str, others: list[str], max_tokens: int, count: TokenCounter = estimate) -> str:
    """Append the names of files without definitions, as many as fit."""
    low, high = 0, len(others)
    while low < high:
        middle = (low + high + 1) // 2
        if count(_with_others(text, others[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return _with_others(text, others[:low])


def _with_others(text: str, names: list[str]) -> str:
    if not names:
        return text
    listing = "other files: " + ", ".join(names)
    return f"{text}\n{listing}" if text else listing
