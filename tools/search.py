"""``search(pattern, path?, glob?)``: regex search over the repository's files.

The files searched are the gitignore-aware list from ``ignore.iter_files`` in both
engines, so results do not depend on which one runs: ``rg`` (ripgrep) when it is on
``PATH``, fed that list explicitly, else Python's ``re`` line by line. Patterns should
keep to the syntax both share (Rust's and Python's regex agree on the common subset).
Matches are shown as ``path:line: text`` with ``CONTEXT`` lines around them
(``path-line- text``), ``--`` between separate groups, at most ``MAX_MATCHES`` matches.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema
from codeagent.tools.ignore import iter_files
from codeagent.tools.listing import matches

MAX_MATCHES = 200
CONTEXT = 2
MAX_FILE_BYTES = 2_000_000
Hit = dict[int, tuple[str, bool]]  # line number -> (text, is_match), for one file


def python_search(root: Path, files: list[str], regex: re.Pattern[str]) -> dict[str, Hit]:
    results: dict[str, Hit] = {}
    for rel in files:
        path = root / rel
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            continue
        lines = data.decode("utf-8", errors="replace").splitlines()
        hits: Hit = {}
        for index, line in enumerate(lines):
            if regex.search(line):
                for near in range(max(0, index - CONTEXT), min(len(lines), index + CONTEXT + 1)):
                    if not hits.get(near + 1, ("", False))[1]:
                        hits[near + 1] = (lines[near], near == index)
        if hits:
            results[rel] = hits
    return results


def rg_search(rg: str, root: Path, files: list[str], pattern: str) -> dict[str, Hit]:
    results: dict[str, Hit] = {}
    for start in range(0, len(files), 500):
        batch = files[start : start + 500]
        proc = subprocess.run(
            [
                rg,
                "--json",
                "-C",
                str(CONTEXT),
                "--max-filesize",
                str(MAX_FILE_BYTES),
                "-e",
                pattern,
                "--",
                *batch,
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 2 and not proc.stdout:
            raise ToolError(f"invalid pattern: {proc.stderr.strip()}")
        for line in proc.stdout.splitlines():
            _add_rg_event(results, json.loads(line))
    return results


def _add_rg_event(results: dict[str, Hit], event: dict[str, Any]) -> None:
    if event.get("type") not in ("match", "context"):
        return
    data = event["data"]
    text = data["lines"].get("text", "").rstrip("\r\n")
    hits = results.setdefault(data["path"]["text"], {})
    is_match = event["type"] == "match"
    if not hits.get(data["line_number"], ("", False))[1]:
        hits[data["line_number"]] = (text, is_match)


def render(results: dict[str, Hit]) -> tuple[str, int, int]:
    """(text, matches shown, matches in all) with the cap applied in file order."""
    out: list[str] = []
    shown = total = 0
    for rel in sorted(results):
        hits = results[rel]
        total += sum(is_match for _, is_match in hits.values())
        if shown >= MAX_MATCHES:
            continue
        previous = None
        for number in sorted(hits):
            text, is_match = hits[number]
            if shown >= MAX_MATCHES and is_match:
                break
            if previous is not None and number != previous + 1:
                out.append("--")
            out.append(f"{rel}{':' if is_match else '-'}{number}{':' if is_match else '-'} {text}")
            shown += is_match
            previous = number
        out.append("--")
    return "\n".join(out[:-1]), shown, total


class Search:
    name: ClassVar[str] = "search"
    description: ClassVar[str] = (
        "Search file contents with a regular expression (ignored files left out). Shows file:line: "
        "text with two lines of context. Narrow with path (a folder or file) and glob (e.g. '*.py')."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {"pattern": {"type": "string"}, "path": {"type": "string"}, "glob": {"type": "string"}}, ["pattern"]
    )
    mutates: ClassVar[bool] = False

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        pattern = args["pattern"]
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ToolError(f"invalid pattern {pattern!r}: {err}") from err
        where = env.resolve(args.get("path"), must_exist=True)
        files = [env.rel(where)] if where.is_file() else iter_files(env.root, where)
        if args.get("glob"):
            files = [rel for rel in files if matches(rel, args["glob"])]
        rg = shutil.which("rg")
        results = rg_search(rg, env.root, files, pattern) if rg else python_search(env.root, files, regex)
        text, shown, total = render(results)
        if not total:
            return Observation(f"no matches for {pattern!r}", data={"matches": 0})
        if total > shown:
            text += f"\n[{total - shown} more matches not shown; narrow the pattern, path or glob]"
        return Observation(text, data={"matches": total, "engine": "rg" if rg else "python"})
