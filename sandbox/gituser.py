"""The user's own git settings (system and global config: outside any workspace, so trusted),
for the two things codeagent's git needs from them: the identity commits are made as, and the
credential helpers and ssh command a push uses. Read as data with ``git config --list``.
"""

from __future__ import annotations

import os
import subprocess

from codeagent.sandbox.gitconfig import Entry, parse_listing
from codeagent.sandbox.gitpolicy import Setting

# Program variables of the user's environment that a push does not inherit.
PROGRAM_VARS = frozenset({"EDITOR", "VISUAL", "PAGER", "SSH_ASKPASS"})


def user_entries() -> list[Entry]:
    """The user's own system and global config (trusted: outside any workspace), as data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_DIR": "/nonexistent"}
    entries: list[Entry] = []
    for scope in ("--system", "--global"):
        proc = subprocess.run(
            ["git", "config", "--list", "-z", "--includes", scope],
            cwd="/",
            env=env,
            capture_output=True,
            check=False,
            timeout=30,
        )
        entries += parse_listing(proc.stdout) if proc.returncode == 0 else []
    return entries


def push_settings() -> list[Setting]:
    """The user's own credential helpers and ssh command."""
    entries = user_entries()
    helpers = [(e.key, e.value or "") for e in entries if e.section == "credential" and e.name == "helper"]
    ssh = [e.value or "ssh" for e in entries if e.key == "core.sshcommand"]
    return [*helpers, ("core.sshCommand", ssh[-1] if ssh else "ssh")]


def user_identity() -> dict[str, str]:
    """``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` from the user's own config; empty when it names none."""
    values = {e.key: e.value or "" for e in user_entries() if e.key in ("user.name", "user.email")}
    if not values.get("user.name") or not values.get("user.email"):
        return {}
    name, email = values["user.name"], values["user.email"]
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
