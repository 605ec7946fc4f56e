"""The places of a file closest to a text the model expected there, for edit_file's errors.

``closest(lines, old)`` ranks every window of ``len(old)`` lines by difflib's similarity
ratio and returns the best few that do not overlap. The ratio is too slow to compute for
every window of a long file, so it is computed only for a shortlist: the windows ranked best
by two measures that cost one pass over the file each, shared lines (ignoring whitespace;
robust to a few changed lines) and shared characters (difflib's ``quick_ratio``, an upper
bound of the ratio; robust to typos in short text). Long texts are compared as words and
symbols rather than characters. A window the shortlist misses is never shown, which is
acceptable for a hint: the best window of a near-miss ranks high on both measures.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter

from codeagent.tools.files import numbered

CANDIDATES = 3
MAX_CANDIDATE_ROWS = 30
SHORTLIST = 5  # windows per cheap measure that get the exact (slow) similarity
CHAR_LEVEL_MAX = 1_000
TOKEN = re.compile(r"\w+|[^\w\s]")


def _quick_bounds(lines: list[str], old: list[str]) -> list[tuple[float, int]]:
    """(upper bound of the similarity, start) for every window of ``len(old)`` lines.

    The bound is difflib's ``quick_ratio`` (shared characters), kept up to date while the
    window slides one line at a time, so the whole scan costs one pass over the file.
    """
    size = len(old)
    target = Counter("".join(line + "\n" for line in old))
    target_len = sum(target.values())
    counts: Counter[str] = Counter()
    common = chars = 0

    def slide(text: str, delta: int) -> None:
        nonlocal common, chars
        for ch in text:
            before = counts[ch]
            counts[ch] = before + delta
            common += min(before + delta, target[ch]) - min(before, target[ch])
        chars += delta * len(text)

    bounds = []
    for index, line in enumerate(lines):
        slide(line + "\n", 1)
        if index >= size:
            slide(lines[index - size] + "\n", -1)
        if index >= size - 1:
            bounds.append((2 * common / (chars + target_len), index - size + 1))
    return bounds or [(0.0, 0)]


def _line_overlap(lines: list[str], old: list[str]) -> list[tuple[float, int]]:
    """(non-blank lines also in ``old`` ignoring whitespace, start) for every window."""
    size = len(old)
    wanted = {" ".join(line.split()) for line in old} - {""}
    hit = [" ".join(line.split()) in wanted for line in lines]
    scores, inside = [], 0
    for index in range(len(lines)):
        inside += hit[index] - (hit[index - size] if index >= size else 0)
        if index >= size - 1:
            scores.append((float(inside), index - size + 1))
    return scores or [(0.0, 0)]


def _spread(scored: list[tuple[float, int]], size: int, limit: int) -> list[tuple[float, int]]:
    """The best ``limit`` windows that do not overlap each other, best first."""
    picked: list[tuple[float, int]] = []
    for score, start in sorted(scored, key=lambda item: (-item[0], item[1])):
        if all(abs(start - other) >= size for _, other in picked):
            picked.append((score, start))
            if len(picked) == limit:
                break
    return picked


def _units(text: str) -> str | list[str]:
    """What similarity compares: characters, or for long text words and symbols (far faster)."""
    return text if len(text) <= CHAR_LEVEL_MAX else TOKEN.findall(text)


def closest(lines: list[str], old: list[str]) -> list[tuple[float, int]]:
    """Up to ``CANDIDATES`` non-overlapping windows, best first, as (similarity, start)."""
    if not lines:
        return []
    size = len(old)
    shortlist = _spread(_line_overlap(lines, old), size, SHORTLIST)
    shortlist += _spread(_quick_bounds(lines, old), size, SHORTLIST)
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(_units("\n".join(old)))
    scored = []
    for start in sorted({start for _, start in shortlist}):
        matcher.set_seq1(_units("\n".join(lines[start : start + size])))
        scored.append((matcher.ratio(), start))
    return _spread(scored, size, CANDIDATES)


def show_closest(lines: list[str], old: list[str]) -> str:
    """The closest windows as numbered lines under a ``lines a-b (NN% similar):`` heading."""
    blocks = []
    for ratio, start in closest(lines, old):
        end = min(start + len(old), len(lines))
        width = max(5, len(str(end)))  # one alignment for every candidate of a file
        rows = [numbered(n + 1, lines[n], width) for n in range(start, min(end, start + MAX_CANDIDATE_ROWS))]
        if end - start > MAX_CANDIDATE_ROWS:
            rows.append(f"[... {end - start - MAX_CANDIDATE_ROWS} more lines]")
        blocks.append(f"lines {start + 1}-{end} ({ratio:.0%} similar):\n" + "\n".join(rows))
    return "\n".join(blocks) if blocks else "(the file is empty)"
