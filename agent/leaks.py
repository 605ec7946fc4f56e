"""What a ``fix`` run sends out, checked for known secrets before it goes.

Three gates, each refusing with a one-line message that names the secret (by its variable,
config key or file, never its value) and where it appeared:

- before committing: the diff of the paths about to be committed (working tree against
  HEAD, new files included, every file as text, no renames, no external diff or textconv)
  and the commit message; a refusal commits nothing and leaves the changes in the working
  tree (``Refused``; also when the diff cannot be computed: the gate fails closed);
- before pushing and opening a pull request: its title and body;
- the result itself (``settle``): any field that holds a secret is redacted, and the status
  becomes ``error`` with the names and fields, before it is printed or written.

The diff is computed in a temporary index (HEAD's tree plus intent-to-add entries for new
files), so neither the user's index nor the object store changes: no blob holding a secret is
written for a commit that never happens.

Limits: only known values are found (``sandbox.secrets``: exact values and their common
encodings); a secret the sandbox let a command read and then transformed otherwise passes.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from codeagent.sandbox.git import GitError, git
from codeagent.sandbox.secrets import KnownSecrets

if TYPE_CHECKING:
    from codeagent.agent.fixtypes import FixResult


class Refused(Exception):
    """Something about to leave the run holds a known secret; the message says which and where."""


def commit_diff(root: Path, paths: list[str]) -> str:
    """``git diff`` of ``paths`` in the working tree against HEAD, new files included."""
    with tempfile.TemporaryDirectory(prefix="codeagent-leaks-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        output = Path(scratch) / "diff"
        git(["read-tree", "HEAD"], root, env=env)
        present = [path for path in paths if (root / path).is_symlink() or (root / path).exists()]
        if present:
            git(["add", "--intent-to-add", "--", *present], root, env=env)
        options = ["--text", "--no-renames", "--no-ext-diff", "--no-textconv", "--no-color"]
        git(["diff", *options, f"--output={output}", "HEAD", "--", *paths], root, env=env)
        return output.read_bytes().decode("utf-8", errors="replace")


def per_file(diff: str) -> dict[str, str]:
    """The diff split by file: ``{"the diff of PATH": text}``."""
    places: dict[str, str] = {}
    for chunk in re.split(r"^(?=diff --git )", diff, flags=re.MULTILINE):
        if chunk:
            place = f"the diff of {_path(chunk)}"
            places[place] = places.get(place, "") + chunk
    return places


def _path(chunk: str) -> str:
    """The file a diff chunk is about: its new name, or its old one for a deletion."""
    lines = chunk.splitlines()
    for prefix in ("+++ b/", "--- a/"):
        named = next((line for line in lines if line.startswith(prefix)), None)
        if named is not None:
            return named[len(prefix) :]
    return lines[0].removeprefix("diff --git ")


def findings(secrets: KnownSecrets, places: Mapping[str, str]) -> str | None:
    """``NAME in PLACE; ...`` for every secret in every place, or None when all are clean."""
    found = []
    for place, text in places.items():
        names = secrets.found(text)
        if names:
            found.append(f"{', '.join(names)} in {secrets.redact(place)}")  # a path may hold one
    return "; ".join(found) or None


def check_commit(secrets: KnownSecrets, root: Path, paths: list[str], message: str) -> None:
    """Raise ``Refused`` when the commit about to be made would hold a known secret."""
    if not secrets:
        return
    try:
        diff = commit_diff(root, paths)
    except GitError as err:  # fail closed: what cannot be checked is not committed
        raise Refused(f"refused to commit: the diff could not be checked for secrets ({err})") from err
    places = {**per_file(diff), "the commit message": message}
    found = findings(secrets, places)
    if found:
        raise Refused(
            f"refused to commit: a known secret appeared ({found}); nothing was committed, "
            "the changes are left in the working tree"
        )


def check_pull_request(secrets: KnownSecrets, title: str, body: str) -> str | None:
    """Why the pull request must not be opened (nor its branch pushed), or None."""
    found = findings(secrets, {"the pull request title": title, "the pull request body": body})
    return f"refused to push or open a pull request: a known secret appeared ({found})" if found else None


def settle(result: FixResult, secrets: KnownSecrets) -> None:
    """Redact ``result`` in place; if it held a secret, make it an error that says so."""
    held = {f.name: secrets.found_in(getattr(result, f.name)) for f in fields(result)}
    held = {name: found for name, found in held.items() if found}
    if not held:
        return
    for f in fields(result):
        setattr(result, f.name, secrets.redact_data(getattr(result, f.name)))
    names = sorted({name for found in held.values() for name in found})
    note = f"the result held a known secret ({', '.join(names)} in {', '.join(held)}); it was redacted"
    if result.status in ("error", "refused"):
        result.message = f"{result.message}; {note}" if result.message else note
    else:
        result.status, result.message = "refused", f"refused: {note}"
