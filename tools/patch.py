"""``apply_patch(patch)``: apply a unified diff to several files, all or nothing.

Accepts git-style (``diff --git``, ``a/`` and ``b/`` prefixes) and plain ``---``/``+++`` diffs,
file creation (``--- /dev/null``), deletion (``+++ /dev/null``) and renames (different old
and new paths). Hunk line counts are not trusted (models often get them wrong): a hunk is
the lines that follow its header. Each hunk is located near its stated line, exactly if
possible, else ignoring trailing whitespace, else ignoring all surrounding whitespace.
Every file's new text is computed in memory first; only when every hunk applies are the
files written, and if a write fails midway the files already written are restored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema
from codeagent.tools.diffs import atomic_write, unified_diff
from codeagent.tools.files import read_source

HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(slots=True)
class Hunk:
    old_start: int
    lines: list[str] = field(default_factory=list)  # each starts with " ", "-", "+" or "\\"


@dataclass(slots=True)
class FilePatch:
    old: str | None  # None for /dev/null
    new: str | None
    hunks: list[Hunk] = field(default_factory=list)


def _path(raw: str) -> str | None:
    name = raw.split("\t")[0].strip()
    return None if name == "/dev/null" else name


def parse(patch: str) -> list[FilePatch]:
    files: list[FilePatch] = []
    lines = patch.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            files.append(FilePatch(_path(line[4:]), _path(lines[index + 1][4:])))
            index += 2
            continue
        match = HUNK.match(line)
        if match:
            if not files:
                raise ToolError("the patch has a hunk before any '--- a/file' / '+++ b/file' header")
            files[-1].hunks.append(Hunk(int(match.group(1))))
        elif (
            files
            and files[-1].hunks
            and not line.startswith(("diff --git", "index ", "new file", "deleted file"))
        ):
            files[-1].hunks[-1].lines.append(line if line else " ")
        index += 1
    if not files:
        raise ToolError("no file headers found; send a unified diff with '--- a/path' and '+++ b/path' lines")
    _strip_prefixes(files)
    return files


def _strip_prefixes(files: list[FilePatch]) -> None:
    for patch in files:
        git_style = (patch.old is None or patch.old.startswith("a/")) and (
            patch.new is None or patch.new.startswith("b/")
        )
        if git_style:
            patch.old = patch.old[2:] if patch.old else None
            patch.new = patch.new[2:] if patch.new else None
        for hunk in patch.hunks:
            while hunk.lines and hunk.lines[-1] == " ":
                hunk.lines.pop()  # blank lines at the end of a patch are not context


def _find(lines: list[str], block: list[str], near: int) -> int | None:
    """Start index of ``block`` in ``lines`` closest to ``near``, by looser and looser comparison."""
    if not block:
        return min(max(near, 0), len(lines))
    for same in (
        lambda a, b: a == b,
        lambda a, b: a.rstrip() == b.rstrip(),
        lambda a, b: a.strip() == b.strip(),
    ):
        starts = [
            start
            for start in range(len(lines) - len(block) + 1)
            if all(same(lines[start + k], block[k]) for k in range(len(block)))
        ]
        if starts:
            return min(starts, key=lambda start: abs(start - near))
    return None


def apply_hunks(text: str, patch: FilePatch, label: str) -> str:
    eol = "\r\n" if "\r\n" in text else "\n"
    final_newline = text.endswith("\n") or not text
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    offset = 0
    for number, hunk in enumerate(patch.hunks, 1):
        old = [line[1:] for line in hunk.lines if line[:1] in (" ", "-")]
        new = [line[1:] for line in hunk.lines if line[:1] in (" ", "+")]
        start = _find(lines, old, hunk.old_start - 1 + offset)
        if start is None:
            preview = "\n".join(old[:8])
            raise ToolError(
                f"hunk {number} of {label} does not apply; the file has no lines matching:\n{preview}"
            )
        lines[start : start + len(old)] = new
        offset = start + len(new) - (hunk.old_start - 1) - len(old)
        final_newline = _final_newline(hunk, final_newline)
    return eol.join(lines) + (eol if final_newline and lines else "")


def _final_newline(hunk: Hunk, current: bool) -> bool:
    for previous, line in zip(hunk.lines, hunk.lines[1:], strict=False):
        if line.startswith("\\"):
            if previous[:1] in (" ", "+"):
                return False
            current = True
    return current


class ApplyPatch:
    name: ClassVar[str] = "apply_patch"
    description: ClassVar[str] = (
        "Apply a unified diff (one or more files, '--- a/path' / '+++ b/path' headers, '@@' hunks; "
        "/dev/null to create or delete). All hunks apply or nothing changes. Returns the diff applied."
    )
    parameters: ClassVar[dict[str, Any]] = schema({"patch": {"type": "string"}}, ["patch"])
    mutates: ClassVar[bool] = True

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        if not isinstance(args["patch"], str) or not args["patch"].strip():
            raise ToolError("patch must be a non-empty unified diff")
        plan = self._plan(parse(args["patch"]), env)
        _write_all(plan)
        diff = "".join(unified_diff(env.rel(path), before, after) for path, (before, after) in plan.items())
        for path in plan:
            env.focus_files.add(env.rel(path))
        return Observation(
            f"patched {len(plan)} file(s)\n{diff}", data={"diff": diff, "paths": [env.rel(p) for p in plan]}
        )

    def _plan(self, patches: list[FilePatch], env: ToolEnv) -> dict[Path, tuple[str | None, str | None]]:
        """path -> (text before or None, text after or None) for every file touched."""
        plan: dict[Path, tuple[str | None, str | None]] = {}
        for patch in patches:
            source = env.resolve(patch.old) if patch.old else None
            target = env.resolve(patch.new) if patch.new else None
            label = patch.new or patch.old or "?"
            if source is None and target is not None and target.exists() and target not in plan:
                raise ToolError(f"{label} already exists; a patch from /dev/null can only create new files")
            if source is not None and source not in plan and not source.is_file():
                raise ToolError(f"{patch.old} does not exist")
            before = self._current(plan, source, env)
            after = apply_hunks(before or "", patch, label)
            if source is not None and source != target:
                plan[source] = (plan.get(source, (before, None))[0], None)
            if target is not None:
                original = (
                    plan[target][0]
                    if target in plan
                    else (read_source(target, label) if target.exists() else None)
                )
                plan[target] = (original, after)
        return plan

    @staticmethod
    def _current(
        plan: dict[Path, tuple[str | None, str | None]], path: Path | None, env: ToolEnv
    ) -> str | None:
        if path is None:
            return None
        if path in plan:
            return plan[path][1]
        return read_source(path, env.rel(path))


def _write_all(plan: dict[Path, tuple[str | None, str | None]]) -> None:
    done: list[Path] = []
    try:
        for path, (_, after) in plan.items():
            if after is None:
                path.unlink()
            else:
                atomic_write(path, after)
            done.append(path)
    except OSError as err:
        for path in done:
            before = plan[path][0]
            if before is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, before)
        raise ToolError(f"writing the patch failed ({err}); every file was restored") from err
