"""``search(pattern, path?, glob?)``: regex search over the repository's files, line by line.

Two engines give the same results for the same input: ``rg`` (ripgrep) when it is on
``PATH``, else Python's ``re``. They agree because Python decides everything around the
regex for both: which files (``ignore.iter_files``, then ``searchable`` drops files above
``MAX_FILE_BYTES`` or with a NUL byte in their first 8 KiB, as ``read_file`` would), and the
presentation (``render``). rg gets that list explicitly, with ``--no-config`` (a user's
ripgreprc must not change results) and ``--text`` (the binary check is done already).
A line ends at ``\n`` in both; a CR before it stays part of the line while matching (so
on CRLF files ``$`` needs ``\r?$``) and is dropped when shown.

Where the regex engines would differ, Python runs: files that are not valid UTF-8 (rg would
match their raw bytes, Python their U+FFFD), and patterns rg rejects but Python accepts
(look-around, backreferences). Every file is read once in Python to sort it so; that costs
a read of the tree, not a Python regex scan of it. The pattern must compile in Python.

Bounded time: rg's engine is linear in the text (finite automata, no backtracking), so it
is used whenever it accepts the pattern. Python's ``re`` backtracks, and a pattern such as
``(a+)+$`` or ``(a*)*\1`` can take exponential time on a line that almost matches, inside C
code that no Python-level timer interrupts; and refusing "dangerous" constructs by looking
at the pattern is guesswork. So the Python engine never runs in codeagent's process: it
runs in a worker process (``_regex_scan.py``) that is killed at the deadline. Both engines
share one deadline per call, ``settings.search_timeout`` or the run's remaining time
budget (``ToolEnv.time_left``) if that is sooner; past it the call returns an error that
says which engine stopped and how to rewrite the pattern. The worker costs a Python start
(tens of milliseconds) on the searches that need it. Patterns are capped at
``MAX_PATTERN_CHARS``; globs are matched by ``globs.py``, linear by construction.

Output: ``path:line: text`` for matches, ``path-line- text`` for ``CONTEXT`` lines around
them, ``--`` between separate groups, at most ``MAX_MATCHES`` matches (with a count of the
rest) and ``MAX_LINE_CHARS`` characters a line.

``mode: "definitions"`` reads the pattern as words, not a regex, and answers with the
definitions that best match them (``ranked_search.py``), over the same files.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.diffs import PROBE_BYTES, printable, split_lines
from codeagent.tools.ignore import iter_files
from codeagent.tools.listing import glob_filter
from codeagent.tools.ranked_search import search_definitions
from codeagent.tools.spec import Specified

MAX_MATCHES = 200
MAX_LINE_CHARS = 300
CONTEXT = 2
MAX_FILE_BYTES = 2_000_000
RG_BATCH = 500  # files per rg invocation, to stay far below the argument-size limit
MAX_PATTERN_CHARS = 2000
REGEX_WORKER = Path(__file__).with_name("_regex_scan.py")
Hit = dict[int, tuple[str, bool]]  # line number -> (text, is_match), for one file


class RgUnsupported(Exception):
    """rg refused the pattern (its regex syntax differs); the Python engine takes over."""


class SearchTimeout(Exception):
    """An engine (the argument: "rg" or "python") ran past the search's deadline and was killed."""


def searchable(root: Path, files: list[str]) -> tuple[list[str], list[str]]:
    """(UTF-8 files, other text files): what is searched, split by who may search it.

    Files above ``MAX_FILE_BYTES``, with a NUL byte near the start, or unreadable are left out.
    Files that are not valid UTF-8 always go to the Python engine, where both engines agree.
    """
    utf8: list[str] = []
    other: list[str] = []
    for rel in files:
        try:
            if (root / rel).stat().st_size > MAX_FILE_BYTES:
                continue
            data = (root / rel).read_bytes()
        except OSError:
            continue  # vanished or unreadable since it was listed: nothing to search
        if b"\x00" in data[:PROBE_BYTES]:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            other.append(rel)
            continue
        utf8.append(rel)
    return utf8, other


def _add(hits: Hit, number: int, text: str, is_match: bool) -> None:
    if not hits.get(number, ("", False))[1]:
        hits[number] = (text, is_match)


def python_search(
    root: Path, files: list[str], pattern: str, deadline: float | None = None
) -> dict[str, Hit]:
    """Python's ``re`` over ``files``, in a worker process killed at ``deadline`` (a
    ``time.monotonic()`` instant; SearchTimeout then)."""
    if not files:
        return {}
    request = json.dumps({"pattern": pattern, "root": str(root), "files": files}).encode()
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", str(REGEX_WORKER)],
            input=request,
            capture_output=True,
            timeout=_seconds_to(deadline, "python"),
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise SearchTimeout("python") from err
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise ToolError(f"cannot search for {pattern!r}: {reason}")
    results: dict[str, Hit] = {}
    for line in proc.stdout.splitlines():
        found = json.loads(line)
        hits = _with_context(root / found["file"], found["lines"])
        if hits:
            results[found["file"]] = hits
    return results


def _with_context(path: Path, indices: list[int]) -> Hit:
    """The matching lines (0-based ``indices``) of a file and ``CONTEXT`` lines around each."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    # Lines end at "\n" only, as for rg without --crlf: a CR stays part of the line.
    lines = [line.removesuffix("\n") for line in split_lines(data.decode("utf-8", errors="replace"))]
    hits: Hit = {}
    for index in indices:
        for near in range(max(0, index - CONTEXT), min(len(lines), index + CONTEXT + 1)):
            _add(hits, near + 1, lines[near], near == index)
    return hits


def _seconds_to(deadline: float | None, engine: str) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise SearchTimeout(engine)
    return left


def rg_search(
    rg: str, root: Path, files: list[str], pattern: str, deadline: float | None = None
) -> dict[str, Hit]:
    results: dict[str, Hit] = {}
    for start in range(0, len(files), RG_BATCH):
        argv = [rg, "--json", "--no-config", "--text", "-C", str(CONTEXT), "-e", pattern, "--"]
        try:
            proc = subprocess.run(
                argv + files[start : start + RG_BATCH],
                cwd=root,
                capture_output=True,
                timeout=_seconds_to(deadline, "rg"),
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise SearchTimeout("rg") from err
        # 2 with no output at all: rg could not use the pattern (per-file errors still print others).
        if proc.returncode == 2 and not proc.stdout:
            raise RgUnsupported(proc.stderr.decode(errors="replace").strip())
        for line in proc.stdout.splitlines():
            _add_rg_event(results, json.loads(line))
    return results


def _rg_text(field: dict[str, str]) -> str:
    """rg's JSON gives ``text``, or ``bytes`` (base64) when the data is not valid UTF-8."""
    if "text" in field:
        return field["text"]
    return base64.b64decode(field["bytes"]).decode("utf-8", errors="replace")


def _add_rg_event(results: dict[str, Hit], event: dict[str, Any]) -> None:
    if event.get("type") not in ("match", "context"):
        return
    data = event["data"]
    path = data["path"]
    rel = path["text"] if "text" in path else os.fsdecode(base64.b64decode(path["bytes"]))
    hits = results.setdefault(rel, {})
    _add(hits, data["line_number"], _rg_text(data["lines"]).removesuffix("\n"), event["type"] == "match")


def _row(rel: str, number: int, text: str, is_match: bool) -> str:
    text = text.removesuffix("\r")
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + " [...]"
    mark = ":" if is_match else "-"
    return f"{rel}{mark}{number}{mark} {printable(text)}"


def _file_rows(rel: str, hits: Hit, budget: int) -> tuple[list[str], int]:
    """One file's rows with at most ``budget`` matches, and how many matches they show."""
    rows: list[str] = []
    shown, previous, last_match = 0, None, 0
    for number in sorted(hits):
        text, is_match = hits[number]
        if shown == budget and (is_match or number > last_match + CONTEXT):
            break  # past the cap: only the trailing context of the last shown match
        if previous is not None and number != previous + 1:
            rows.append("--")
        rows.append(_row(rel, number, text, is_match))
        if is_match:
            shown, last_match = shown + 1, number
        previous = number
    return rows, shown


def render(results: dict[str, Hit]) -> tuple[str, int, int]:
    """(text, matches shown, matches in all), files in path order, capped at MAX_MATCHES."""
    groups: list[str] = []
    shown = total = 0
    for rel in sorted(results):
        hits = results[rel]
        total += sum(is_match for _, is_match in hits.values())
        if shown < MAX_MATCHES:
            rows, count = _file_rows(rel, hits, MAX_MATCHES - shown)
            groups.append("\n".join(rows))
            shown += count
    return "\n--\n".join(groups), shown, total


def run_engines(
    root: Path, files: tuple[list[str], list[str]], pattern: str, deadline: float
) -> tuple[dict[str, Hit], str]:
    """(results, engine name): rg when it is installed and accepts the pattern, else Python."""
    utf8, other = files
    rg = shutil.which("rg")
    if rg:
        try:
            found = rg_search(rg, root, utf8, pattern, deadline)
            return found | python_search(root, other, pattern, deadline), "rg"
        except RgUnsupported:
            pass
    return python_search(root, utf8 + other, pattern, deadline), "python"


def compile_check(pattern: object) -> str:
    """The pattern, once Python's ``re`` compiles it (both engines must accept what runs)."""
    if not isinstance(pattern, str):
        raise ToolError("pattern must be a string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ToolError(f"pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_CHARS}")
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as err:
        raise ToolError(f"invalid regular expression {pattern!r}: {err}") from err
    return pattern


def timeout_message(engine: str, seconds: float) -> str:
    if engine == "rg":
        return f"search stopped after {seconds:g}s: too much to search; narrow path or glob"
    return (
        f"search stopped after {seconds:g}s. The pattern ran in Python's regex engine (rg is "
        "missing, rejected it, or some files are not UTF-8), which backtracks: nested or "
        "overlapping quantifiers such as (a+)+ or (a|a)*, and backreferences, can take "
        "exponential time on lines that almost match. Rewrite the pattern without them, or "
        "narrow path or glob."
    )


class Search(Specified, spec="search"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        ranked = args.get("mode") == "definitions"
        pattern = str(args["pattern"]) if ranked else compile_check(args["pattern"])
        where = env.resolve(args.get("path"), must_exist=True)
        files = [env.rel(where)] if where.is_file() else iter_files(env.root, where)
        if args.get("glob"):
            if not isinstance(args["glob"], str):
                raise ToolError("glob must be a string such as '*.py'")
            files = list(filter(glob_filter(args["glob"], env.rel(where)), files))
        if ranked:
            return search_definitions(env, files, pattern)
        limit = env.time_left(env.settings.search_timeout)
        try:
            found = run_engines(env.root, searchable(env.root, files), pattern, time.monotonic() + limit)
        except SearchTimeout as stopped:
            env.check_time()  # the run's budget ran out rather than the search's own limit
            raise ToolError(timeout_message(str(stopped), limit)) from stopped
        results, engine = found
        text, shown, total = render(results)
        if not total:
            hint = "; search matches one line at a time" if "\\n" in pattern or "\n" in pattern else ""
            return Observation(f"no matches for {pattern!r}{hint}", data={"matches": 0, "engine": engine})
        if total > shown:
            text += f"\n[{total - shown} more matches not shown; narrow the pattern, path or glob]"
        return Observation(text, data={"matches": total, "shown": shown, "engine": engine})
