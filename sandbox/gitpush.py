"""``git push`` of a run's branch: the one host git call that needs the user's own settings.

Over https or ssh with the user's credential helpers and ssh command (``gituser.py``), or into a
bare repository on this machine outside the work tree, whose receive-pack runs with its hooks
off (it starts without our settings in its environment). The repository's own settings are
neutralised as on every call, and a push goes nowhere a rewritten URL (``url.*.insteadOf``)
or a second URL of the remote would send it.
"""

from __future__ import annotations

import os
from pathlib import Path

from codeagent.sandbox import gitpolicy, gituser
from codeagent.sandbox.git import GitRepo, UnsafeRepository, run_git, settings_env


def push(repo: GitRepo, remote: str, branch: str, timeout: float = 300.0) -> str:
    """``git push --set-upstream remote branch`` with the user's credentials: over https or
    ssh, or into a bare repository on this machine outside the work tree (its hooks off)."""
    repo.verify()
    if repo.rewrites_urls:
        raise UnsafeRepository(
            "its .git/config rewrites URLs (url.*.insteadOf); codeagent does not push there"
        )
    urls = [u for u in repo.run(["remote", "get-url", "--push", "--all", remote]).splitlines() if u]
    if len(urls) != 1:
        raise UnsafeRepository(
            f"its remote {remote} has {len(urls)} push URLs; codeagent pushes to exactly one"
        )
    protocols, receive_pack = _transport(repo, remote, urls[0])
    user = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k not in gituser.PROGRAM_VARS}
    place = {
        "GIT_DIR": str(repo.git_dir),
        "GIT_WORK_TREE": str(repo.work_tree),
        "GIT_COMMON_DIR": str(repo.git_dir),
    }
    # The repository's helpers and ssh command are neutralised like on every call (FIXED
    # empties the helper list); the user's own come back after that, last.
    config = settings_env([*repo.all_overrides(), *gituser.push_settings()])
    env = user | gitpolicy.FIXED_ENV | place | config | {"GIT_ALLOW_PROTOCOL": protocols}
    args = [
        "push",
        f"--receive-pack={receive_pack}",
        "--no-recurse-submodules",
        "--set-upstream",
        remote,
        branch,
    ]
    return run_git(args, repo.work_tree, env, check=True, input_text=None, timeout=timeout)


def _transport(repo: GitRepo, remote: str, url: str) -> tuple[str, str]:
    """(allowed protocols, receive-pack command) for pushing to ``url``."""
    if not (url.startswith(("file://", "/", "./", "../")) or url in (".", "..")):
        return ":".join(gitpolicy.PUSH_PROTOCOLS), "git-receive-pack"
    path = Path(url.removeprefix("file://"))
    real = Path(os.path.realpath(path if path.is_absolute() else repo.work_tree / path))
    if real == repo.work_tree or repo.work_tree in real.parents:
        raise UnsafeRepository(
            f"its remote {remote} is a folder inside the work tree ({url}); codeagent does not push there"
        )
    if not ((real / "HEAD").is_file() and (real / "objects").is_dir() and (real / "refs").is_dir()):
        raise UnsafeRepository(f"its remote {remote} ({url}) is not a bare repository on this machine")
    # receive-pack starts without our settings in its environment: its hooks are switched off here.
    return "file", "git -c core.hooksPath=/dev/null -c core.fsmonitor=false receive-pack"
