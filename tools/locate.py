"""Where a block of lines sits in a file, for ``apply_patch``: near-linear in the file's size.

The rule (``Locator.find``): among the places at or after ``low`` where the block's lines
equal the file's, the one closest to ``near`` wins (the earlier on a tie); lines are compared
exactly, and only when no place matches so, ignoring trailing whitespace, and then ignoring
leading and trailing whitespace.

How: for each comparison, the file's lines are turned once into their comparison keys (the
line, or it stripped) and counted (``LineIndex``, built on first use and kept for every hunk
of the file). A block line the file does not have rules the comparison out at once.
Otherwise the candidates are the occurrences of the block's rarest line (found by C-speed
list scans, kept), tried in order of distance from ``near``, each checked by comparing two
list slices; the first that holds is the answer. When the
checks' work passes the file's length (a block made only of lines the file repeats, like
blanks, that keeps almost matching), a Knuth-Morris-Pratt scan of the rest of the file finds
every place in O(file + block) instead. So a hunk costs O(block + candidates checked) as a
rule and O(file + block) at worst, after the O(file) index per comparison used; before this,
each comparison tried every place with line-by-line string comparisons, O(file * block).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator

COMPARISONS: tuple[Callable[[str], str], ...] = (str, str.rstrip, str.strip)


class LineIndex:
    """The file's lines under one comparison, how often each occurs, and (on demand) where."""

    def __init__(self, lines: list[str], key: Callable[[str], str]) -> None:
        self.key = key
        self.keys = lines if key is str else list(map(key, lines))
        self.counts = Counter(self.keys)
        self._where: dict[str, list[int]] = {}

    def where(self, line: str) -> list[int]:
        """The sorted indexes of ``line`` (a key), found by C-speed scans and kept."""
        if line not in self._where:
            found, index = [], -1
            for _ in range(self.counts[line]):
                index = self.keys.index(line, index + 1)
                found.append(index)
            self._where[line] = found
        return self._where[line]

    def find(self, block: list[str], near: int, low: int) -> int | None:
        wanted = [self.key(line) for line in block]
        if any(line not in self.counts for line in wanted):
            return None
        size, last = len(wanted), len(self.keys) - len(wanted)
        offset = min(range(size), key=lambda k: self.counts[wanted[k]])
        occurrences = self.where(wanted[offset])
        # Starts the rarest line allows, in order: occurrences are sorted.
        first, end = bisect_left(occurrences, low + offset), bisect_left(occurrences, last + offset + 1)
        starts = [position - offset for position in occurrences[first:end]]
        work = 0
        for start in _by_distance(starts, near):
            if self.keys[start : start + size] == wanted:
                return start
            work += size
            if work > len(self.keys):
                return _closest(_occurrences(self.keys, wanted, low), near)
        return None


class Locator:
    """One file's lines, indexed lazily for each comparison; ``find`` places a block."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.indexes: dict[int, LineIndex] = {}

    def find(self, block: list[str], near: int, low: int) -> int | None:
        """Index at or after ``low`` where ``block`` sits, closest to ``near``, loosest last."""
        if not block:
            return min(max(near, low), len(self.lines))
        for number, key in enumerate(COMPARISONS):
            if number not in self.indexes:
                self.indexes[number] = LineIndex(self.lines, key)
            found = self.indexes[number].find(block, near, low)
            if found is not None:
                return found
        return None


def _by_distance(starts: list[int], near: int) -> Iterator[int]:
    """The sorted ``starts`` by distance from ``near``, the earlier first on a tie."""
    right = bisect_left(starts, near)
    left = right - 1
    while left >= 0 or right < len(starts):
        if right >= len(starts) or (left >= 0 and near - starts[left] <= starts[right] - near):
            yield starts[left]
            left -= 1
        else:
            yield starts[right]
            right += 1


def _closest(starts: Iterator[int], near: int) -> int | None:
    return min(starts, key=lambda start: (abs(start - near), start), default=None)


def _occurrences(text: list[str], pattern: list[str], low: int) -> Iterator[int]:
    """Every start at or after ``low`` where ``pattern`` occurs in ``text`` (Knuth-Morris-Pratt)."""
    border = [0] * len(pattern)  # [i]: the longest proper prefix of pattern[: i + 1] that ends it
    length = 0
    for i in range(1, len(pattern)):
        while length and pattern[i] != pattern[length]:
            length = border[length - 1]
        if pattern[i] == pattern[length]:
            length += 1
        border[i] = length
    length = 0
    for i in range(low, len(text)):
        while length and text[i] != pattern[length]:
            length = border[length - 1]
        if text[i] == pattern[length]:
            length += 1
        if length == len(pattern):
            yield i - length + 1
            length = border[length - 1]
