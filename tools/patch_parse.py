"""Parsing unified diffs as models write them, for ``apply_patch``.

A patch is a sequence of file sections. A section starts at ``diff --git a/X b/Y`` or at a
``--- X`` line directly followed by ``+++ Y``; git's extended lines (``new file mode``,
``deleted file mode``, ``rename from``/``to``) refine it, other git metadata (``index``,
modes, similarity) is skipped. ``/dev/null`` on either side means creation or deletion;
``a/`` and ``b/`` prefixes are dropped when the section is git-style (both sides carry
them, or it began with ``diff --git``).

Hunks start at ``@@ -N[,M] +N[,M] @@`` (or a bare ``@@``). Their line counts are ignored:
a hunk runs to the next ``@@`` or section start, so a miscounted hunk still parses (the
cost: a removed line that reads ``--- x`` followed by an added ``+++ y`` starts a section).
Inside a hunk an empty line is blank context (editors and models drop the space). A line
with no `` ``/``-``/``+``/``\\`` prefix ends the hunk: trailing prose after the last hunk is
ignored, but a hunk line after such a line is an error, since silently dropping part of a
hunk would apply half an edit. Not supported: binary patches, copies, quoted paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from codeagent.tools.base import ToolError

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")
SKIPPED = ("index ", "old mode ", "new mode ", "similarity index ", "dissimilarity index ")
UNSUPPORTED = ("GIT binary patch", "Binary files ", "copy from ", "copy to ")


@dataclass(slots=True)
class Hunk:
    old_start: int | None  # 1-based, as stated in the header; None for a bare "@@"
    lines: list[str] = field(default_factory=list)  # each starts with " ", "-", "+" or "\\"

    def old_lines(self) -> list[str]:
        return [line[1:] for line in self.lines if line[:1] in (" ", "-")]


@dataclass(slots=True)
class FilePatch:
    old: str | None  # repository-relative path, None for /dev/null (creation)
    new: str | None  # None for /dev/null (deletion)
    git: bool = False  # began with "diff --git": its paths carry a/ and b/
    hunks: list[Hunk] = field(default_factory=list)


def _header_path(raw: str) -> str | None:
    name = raw.split("\t")[0].strip()  # a tab separates an optional timestamp
    return None if name == "/dev/null" else name


def _git_paths(rest: str) -> tuple[str, str]:
    """The two paths of ``diff --git a/X b/Y``; equal halves win when names hold " b/"."""
    splits = [i for i in range(len(rest)) if rest.startswith(" b/", i)]
    for i in splits:
        if rest[:i].removeprefix("a/") == rest[i + 3 :]:
            return rest[:i], rest[i + 1 :]
    if not splits:
        raise ToolError(f"cannot read the paths of 'diff --git {rest}'")
    return rest[: splits[0]], rest[splits[0] + 1 :]


class _Parser:
    def __init__(self) -> None:
        self.files: list[FilePatch] = []
        self.hunk: Hunk | None = None
        self.hunk_closed = False  # a non-hunk line ended the current hunk
        self.refinable = False  # a "diff --git" section still waiting for its ---/+++ lines

    def section(self, patch: FilePatch) -> None:
        self.files.append(patch)
        self.hunk, self.hunk_closed, self.refinable = None, False, patch.git

    def header_pair(self, old: str, new: str) -> None:
        """``--- old`` / ``+++ new``: refines a fresh ``diff --git`` section, else starts one."""
        if self.refinable:
            self.files[-1].old, self.files[-1].new = _header_path(old), _header_path(new)
            self.refinable = False
        else:
            self.section(FilePatch(_header_path(old), _header_path(new)))

    def extended(self, line: str) -> bool:
        """Handle a git extended header line of the current section; False if it is not one."""
        current = self.files[-1] if self.files else None
        if current is None or self.hunk is not None:
            return False
        if line.startswith(UNSUPPORTED):
            raise ToolError(f"apply_patch cannot apply binary patches or copies ({line.strip()!r})")
        if line.startswith("new file mode"):
            current.old = None
        elif line.startswith("deleted file mode"):
            current.new = None
        elif line.startswith("rename from "):
            current.old = "a/" + line[len("rename from ") :].strip()
        elif line.startswith("rename to "):
            current.new = "b/" + line[len("rename to ") :].strip()
        return line.startswith(("new file mode", "deleted file mode", "rename ", *SKIPPED))

    def hunk_line(self, number: int, line: str) -> None:
        if self.hunk is None:
            return  # prose before the first hunk or between sections
        if self.hunk_closed and line == "":
            return  # blank lines between trailing prose and the end
        if line == "" or line[0] in " -+\\":
            if self.hunk_closed:
                raise ToolError(
                    f"patch line {number} continues a hunk after a line that is not part of it; every "
                    "hunk line must start with ' ' (context), '-' (removed) or '+' (added)"
                )
            self.hunk.lines.append(line or " ")
        else:
            self.hunk_closed = True

    def feed(self, number: int, line: str, following: str | None) -> bool:
        """Take one line; True when it also consumed ``following`` (a ``+++`` header)."""
        if line.startswith("diff --git "):
            old, new = _git_paths(line[len("diff --git ") :])
            self.section(FilePatch(old, new, git=True))
        elif line.startswith("--- ") and following is not None and following.startswith("+++ "):
            self.header_pair(line[4:], following[4:])
            return True
        elif line.startswith("@@"):
            if not self.files:
                raise ToolError("the patch has a hunk before any '--- a/file' / '+++ b/file' header")
            match = HUNK_HEADER.match(line)
            self.hunk = Hunk(int(match.group(1)) if match else None)
            self.hunk_closed = self.refinable = False
            self.files[-1].hunks.append(self.hunk)
        elif not self.extended(line):
            self.hunk_line(number, line)
        return False


def _finish(patch: FilePatch) -> FilePatch:
    old, new = patch.old, patch.new
    if patch.git or ((old is None or old.startswith("a/")) and (new is None or new.startswith("b/"))):
        patch.old = old[2:] if old and old.startswith("a/") else old
        patch.new = new[2:] if new and new.startswith("b/") else new
    for hunk in patch.hunks:
        while hunk.lines and hunk.lines[-1] == " ":
            hunk.lines.pop()  # blank lines after a hunk are the patch's layout, not context
    if patch.old is None and patch.new is None:
        raise ToolError("a file section has /dev/null on both sides")
    return patch


def parse_patch(text: str) -> list[FilePatch]:
    """The file sections of a unified diff, or ToolError saying what is wrong with it."""
    lines = text.replace("\r\n", "\n").split("\n")
    parser = _Parser()
    index = 0
    while index < len(lines):
        following = lines[index + 1] if index + 1 < len(lines) else None
        index += 2 if parser.feed(index + 1, lines[index], following) else 1
    if not parser.files:
        raise ToolError("no file headers found; send a unified diff with '--- a/path' and '+++ b/path' lines")
    return [_finish(patch) for patch in parser.files]
