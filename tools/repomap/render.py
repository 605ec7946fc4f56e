"""Rendering ranked definitions as an outline, fitted to a token budget by binary search."""

from __future__ import annotations

from collections.abc import Callable

from codeagent.tools.repomap.tags import Tag

TokenCounter = Callable[[str], int]


def estimate(text: str) -> int:
    return (len(text) + 3) // 4


def render(selected: list[tuple[str, Tag]]) -> str:
    """Files in order of their best definition; each file's definitions in line order."""
    by_file: dict[str, list[Tag]] = {}
    for path, tag in selected:
        by_file.setdefault(path, []).append(tag)
    blocks = []
    for path, tags in by_file.items():
        width = len(str(max(tag.line for tag in tags)))
        rows = [f"  {tag.line:>{width}}| {tag.text}" for tag in sorted(tags, key=lambda t: t.line)]
        blocks.append(f"{path}:\n" + "\n".join(dict.fromkeys(rows)))
    return "\n".join(blocks)


def fit(ranked: list[tuple[str, Tag]], max_tokens: int, count: TokenCounter = estimate) -> tuple[str, int]:
    """The longest prefix of ``ranked`` whose rendering fits ``max_tokens``: (text, how many)."""
    low, high = 0, len(ranked)
    while low < high:
        middle = (low + high + 1) // 2
        if count(render(ranked[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return render(ranked[:low]), low


def add_other_files(text: str, others: list[str], max_tokens: int, count: TokenCounter = estimate) -> str:
    """Append names of files without definitions while they fit."""
    if not others:
        return text
    kept: list[str] = []
    for name in others:
        candidate = text + "\nother files: " + ", ".join([*kept, name])
        if count(candidate) > max_tokens:
            break
        kept.append(name)
    return text + ("\nother files: " + ", ".join(kept) if kept else "")
