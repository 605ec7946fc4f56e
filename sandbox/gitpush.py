"""``git push`` of a run's branch: the one host git call that needs the user's own settings.

Over https or ssh with the user's credential helpers and ssh command (``gituser.py``), or into a
bare repository on this machine outside the work tree, whose receive-pack runs with its hooks
off (it starts without our settings in its environment). The repository's own settings are
neutralised as on every call, and a push goes nowhere a rewritten URL (``url.*.insteadOf``)
or a second URL of the remote would send it.

With a ``HostToken`` (``fix`` passes ``GH_TOKEN``/``GITHUB_TOKEN`` for github.com, or for
``GITHUB_SERVER_URL``'s host), a push to an https URL of exactly that host, with no user
name in it, authenticates with the token as GitHub's ``x-access-token`` user, sent as an
``Authorization`` header (``http.<url>.extraheader``, what ``actions/checkout`` does). The
header goes to git only in the environment of this one push (``GIT_CONFIG_COUNT``, which git
hands to ``git-remote-https``): never in a file, never on a command line (``/proc/*/cmdline``
is readable by every process), never in output. It is keyed by the push URL itself, the most
specific key there is, and preceded by an empty value, so the headers the repository's own
config adds for that URL (a token ``actions/checkout`` persisted) are dropped, not sent twice.
Any other URL gets no token. Limits: the environment of the push and its ``git-remote-https``
is readable in ``/proc`` by processes of the same user outside any sandbox while they run; a
redirect to another host gets no ``Authorization`` header (curl drops it).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from codeagent.sandbox import gitpolicy, gituser
from codeagent.sandbox.git import GitRepo, UnsafeRepository, run_git, settings_env
from codeagent.sandbox.gitpolicy import Setting


@dataclass(frozen=True, slots=True)
class HostToken:
    """A token for https pushes to one host (``github.com``, or ``host:port``)."""

    host: str
    token: str = field(repr=False)


def token_settings(url: str, token: HostToken | None) -> list[Setting]:
    """The settings that make a push to ``url`` send ``token``; none unless ``url`` is https to
    the token's host with no user name (a URL's own user and password are the user's choice)."""
    if token is None or not token.token or any(c.isspace() or not c.isprintable() for c in url):
        return []
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return []
    host = (parts.hostname or "") + (f":{port}" if port not in (None, 443) else "")
    if parts.scheme.lower() != "https" or "@" in parts.netloc or host != token.host.lower():
        return []
    basic = base64.b64encode(f"x-access-token:{token.token}".encode()).decode("ascii")
    key = f"http.{url}.extraheader"
    return [(key, ""), (key, f"AUTHORIZATION: basic {basic}")]


def push(
    repo: GitRepo, remote: str, branch: str, timeout: float = 300.0, token: HostToken | None = None
) -> str:
    """``git push --set-upstream remote branch`` with the user's credentials (or ``token``, for
    an https URL of its host): over https or ssh, or into a bare repository on this machine
    outside the work tree (its hooks off)."""
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
    # The token's header comes last: an empty value first drops the repository's own headers.
    settings = [*repo.all_overrides(), *gituser.push_settings(), *token_settings(urls[0], token)]
    config = settings_env(settings)
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
