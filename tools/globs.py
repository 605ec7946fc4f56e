"""Glob matching in time linear in the path, whatever the glob: an automaton, no backtracking.

Syntax (what ``list_files`` and ``search``'s ``glob`` document): ``*`` and ``?`` stay within
one folder, ``**`` spans folders, ``**/`` also matches no folder at all, ``[abc]`` and
``[!abc]`` are classes (a ``]`` right after the opening bracket is a member, ranges such as
``a-z`` work, a negated class never matches ``/``, an unclosed ``[`` is a literal), anything
else is literal. A glob matches a whole path.

Why not a regex: a glob with several stars becomes a regex with several unbounded
quantifiers, and Python's backtracking engine tries every way to share a near-miss between
them: ``*a*a*a*a*a*a*b`` against a long name of ``a``s takes time to the power of the number
of stars. Here the glob is a small nondeterministic automaton (a state before each token,
plus one inside each ``**/``), run by subset construction: each set of states and each
transition is built the first time a path needs it and cached on the ``Glob``, so a warm
match is one dict lookup per character, and a cold step costs at most the number of tokens.
A match is therefore O(len(path) * len(glob)) in the worst case and O(len(path)) once warm;
there is no input on which it backtracks, at the price of being slower than a compiled
regex on the globs where the regex is safe (``docs/bench/cpu-choices.md``).

Limits: globs are capped at ``MAX_GLOB_CHARS``; the transition cache is cleared when it
passes ``MAX_TRANSITIONS`` (between matches, never during one), which bounds memory and
costs only rebuilding. A ``Glob`` is not shared between threads (its cache grows as it
matches): compile one per use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from codeagent.tools.base import ToolError

MAX_GLOB_CHARS = 1000
MAX_TRANSITIONS = 50_000
ONE, STAR, ANY, DIRS = range(4)  # token kinds: one character, "*", "**", "**/"
START, DEAD = 0, 1  # automaton states made first
Token = tuple[int, Callable[[str], bool] | None]


def _class_test(pattern: str, index: int) -> tuple[Callable[[str], bool], int] | None:
    """The test for a ``[...]`` class starting at ``index`` and the index after it; None if unclosed."""
    start = index + 1
    negate = pattern[start : start + 1] == "!"
    start += 1 if negate else 0
    # A "]" right after the opening bracket (or "[!") is a member, as in fnmatch.
    end = pattern.find("]", start + 1 if pattern[start : start + 1] == "]" else start)
    if end == -1:
        return None
    members = "".join("\\" + ch if ch in "\\^[]" else ch for ch in pattern[start:end])
    try:
        # One character class, no quantifier: a regex that cannot backtrack.
        regex = re.compile(("[^/" if negate else "[") + members + "]", re.DOTALL)
    except re.error as err:
        raise ToolError(f"invalid glob {pattern!r}: bad class {pattern[index : end + 1]!r} ({err})") from err
    return (lambda ch: regex.fullmatch(ch) is not None), end + 1


def tokens(pattern: str) -> list[Token]:
    """The glob as a list of tokens (kind, test for one character or None)."""
    out: list[Token] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append((DIRS, None))
            index += 3
        elif pattern.startswith("**", index):
            out.append((ANY, None))
            index += 2
        elif pattern[index] == "*":
            out.append((STAR, None))
            index += 1
        elif pattern[index] == "?":
            out.append((ONE, lambda ch: ch != "/"))
            index += 1
        elif pattern[index] == "[" and (found := _class_test(pattern, index)) is not None:
            test, index = found
            out.append((ONE, test))
        else:
            out.append((ONE, pattern[index].__eq__))
            index += 1
    return out


class Glob:
    """A compiled glob; ``match`` tells whether it matches a whole path."""

    def __init__(self, steps: list[Token]) -> None:
        self.steps = steps
        self._sets: list[frozenset[int]] = []  # automaton state id -> the token positions it holds
        self._ids: dict[frozenset[int], int] = {}
        self._rows: list[dict[str, int]] = []  # state -> {character: next state}
        self._size = 0  # transitions cached
        self._reset()

    def match(self, path: str) -> bool:
        if self._size > MAX_TRANSITIONS:
            self._reset()
        rows = self._rows
        state = START
        for ch in path:
            found = rows[state].get(ch)
            state = self._step(state, ch) if found is None else found
            if state == DEAD:
                return False
        return len(self.steps) in self._sets[state]

    def _reset(self) -> None:
        self._sets, self._ids, self._rows, self._size = [], {}, [], 0
        self._state(self._closure([0]))  # START
        self._state(frozenset())  # DEAD: no state left, nothing after can match

    def _state(self, positions: frozenset[int]) -> int:
        if positions not in self._ids:
            self._ids[positions] = len(self._sets)
            self._sets.append(positions)
            self._rows.append({})
        return self._ids[positions]

    def _closure(self, positions: Iterable[int]) -> frozenset[int]:
        """The states plus those reachable by skipping stars (which may match nothing)."""
        seen: set[int] = set()
        todo = list(positions)
        while todo:
            position = todo.pop()
            if position in seen:
                continue
            seen.add(position)
            if position < len(self.steps) and self.steps[position][0] != ONE:
                todo.append(position + 1)
        return frozenset(seen)

    def _step(self, state: int, ch: str) -> int:
        """States are token positions 0..len(steps) (before that token; the last: matched), and
        for a ``**/`` at position i, ``end + 1 + i``: inside it, past its first character."""
        end = len(self.steps)
        after: list[int] = []
        for position in self._sets[state]:
            if position > end:  # inside a "**/": any character stays, a "/" may also leave
                after += [position, position - end] if ch == "/" else [position]
                continue
            if position == end:
                continue
            kind, test = self.steps[position]
            if kind == ONE and test is not None and test(ch):
                after.append(position + 1)
            elif kind == ANY or (kind == STAR and ch != "/"):
                after.append(position)
            elif kind == DIRS:
                after += [end + 1 + position, position + 1] if ch == "/" else [end + 1 + position]
        target = self._state(self._closure(after))
        self._rows[state][ch] = target
        self._size += 1
        return target


def compile_glob(pattern: str) -> Glob:
    """The compiled glob, or ToolError for one that is too long or has a bad class."""
    if len(pattern) > MAX_GLOB_CHARS:
        raise ToolError(f"glob is {len(pattern)} characters long; the limit is {MAX_GLOB_CHARS}")
    return Glob(tokens(pattern))
