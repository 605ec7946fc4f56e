"""``@path`` in a message: completing repository paths, and attaching those files' text.

Candidates are the files git knows or would add (tracked and untracked, ignored ones left
out), listed once and refreshed after each turn. Matching prefers a path or file name that
starts with what was typed, then any path that contains it. On send, each ``@path`` naming a
text file inside the repository attaches the file: its text follows the message in a fenced
block (a fence longer than any backtick run in it). Files over ``MAX_ATTACH_BYTES``, binary
files and paths outside the repository are not attached, and the user is told why; the
model can still read them with its tools.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from codeagent.sandbox.git import GitError, git
from codeagent.tools.base import ToolEnv, ToolError
from codeagent.tools.diffs import read_text

MAX_ATTACH_BYTES = 100_000
MAX_CANDIDATES = 8
MAX_FILES_LISTED = 50_000
MENTION = re.compile(r"(?:^|(?<=\s))@(\S+)")
FRAGMENT = re.compile(r"(?:^|(?<=\s))@(\S*)$")


def list_files(root: Path) -> list[str]:
    try:
        out = git(["ls-files", "--cached", "--others", "--exclude-standard", "-z"], root)
    except (GitError, OSError):
        return []
    return sorted(set(filter(None, out.split("\0"))))[:MAX_FILES_LISTED]


def fragment(line_before_cursor: str) -> str | None:
    """What follows the ``@`` being typed at the cursor, or None when not in a mention."""
    match = FRAGMENT.search(line_before_cursor)
    return match.group(1) if match else None


def candidates(files: list[str], typed: str) -> list[str]:
    needle = typed.casefold()

    def rank(path: str) -> tuple[int, int, str]:
        folded = path.casefold()
        name = folded.rsplit("/", 1)[-1]
        first = 0 if folded.startswith(needle) else 1 if name.startswith(needle) else 2
        return first, len(path), path

    found = [path for path in files if needle in path.casefold()]
    return sorted(found, key=rank)[:MAX_CANDIDATES]


@dataclass(slots=True)
class Attached:
    message: str  # what the model gets
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def attach(text: str, root: Path) -> Attached:
    env = ToolEnv(root)
    result = Attached(text)
    blocks = []
    for mention in dict.fromkeys(MENTION.findall(text)):
        mention = mention.rstrip(".,;:!?)")
        try:
            path = env.resolve(mention, must_exist=True)
        except ToolError:
            continue  # not a path of this repository: an e-mail address, a decorator, ...
        rel = env.rel(path)
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_ATTACH_BYTES:
            result.problems.append(f"{rel} is over {MAX_ATTACH_BYTES // 1000} kB; not attached")
            continue
        try:
            content = read_text(path, rel)
        except ToolError as err:
            result.problems.append(f"{rel}: {err}")
            continue
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", content)), default=0))
        blocks.append(f"{rel}:\n{fence}\n{content.rstrip()}\n{fence}")
        result.files.append(rel)
    if blocks:
        result.message = text + "\n\nAttached files:\n\n" + "\n\n".join(blocks)
    return result
