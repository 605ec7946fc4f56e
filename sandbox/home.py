"""What a sandboxed command sees of home folders: nothing but the toolchains it needs.

Home folders hold credentials in more places than any hide list can name (``~/.ssh``,
``~/.config/gh``, ``~/.npmrc``, a stray ``~/token.txt``), so they are emptied rather than
filtered: ``hidden_roots`` lists the folders replaced by an empty private tmpfs (the user's
``$HOME``, ``/root`` and ``/home``), and ``toolchain_mounts`` the folders mounted back into
them read-only, an allowlist:

- the folders the environment points at: ``PATH`` entries, the running interpreter's prefixes,
  ``VIRTUAL_ENV``, and the homes toolchains name in variables (``PYENV_ROOT``, ``CARGO_HOME``,
  ``RUSTUP_HOME``, ``GOPATH``, ``GOROOT``, ``JAVA_HOME``, ``NVM_DIR``, ...);
- the usual toolchain homes when they exist (``~/.pyenv``, ``~/.cargo``, ``~/.rustup``,
  ``~/go``, ``~/.nvm``, ``~/.local/bin``, ``~/.local/lib``, caches of compiled artefacts...).

A path under a hidden root is mounted by its *toolchain root*: the first folder below the
user's home (``~/.pyenv`` for ``~/.pyenv/shims``, whose scripts need the rest of it), or the
first two for the shared folders ``.local``, ``.config``, ``.cache`` and ``.m2`` (so
``~/.local/bin`` comes back but ``~/.local/share/keyrings`` does not). Files that hold
registry credentials inside a toolchain root (``~/.cargo/credentials.toml``) are masked.

``secret_places`` lists folders outside any home that hold secrets on common machines
(``/run/secrets``, Kubernetes' service-account token, codeagent's own state, cache and
config folders wherever ``XDG_*`` put them); they are hidden too.

Limits: a toolchain that keeps credentials inside its own root under another name than the
ones masked here exposes them; a home folder outside ``/home`` and ``/root`` belonging to
another user is not hidden unless it is ``$HOME``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TOOLCHAIN_VARS = (
    "VIRTUAL_ENV",
    "PYENV_ROOT",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "GOPATH",
    "GOROOT",
    "GOMODCACHE",
    "JAVA_HOME",
    "NVM_DIR",
    "SDKMAN_DIR",
    "RBENV_ROOT",
    "BUN_INSTALL",
    "DENO_DIR",
)
USUAL_TOOLCHAINS = (
    ".pyenv",
    ".cargo",
    ".rustup",
    "go",
    ".nvm",
    ".bun",
    ".deno",
    ".rbenv",
    ".sdkman",
    ".local/bin",
    ".local/lib",
    ".local/share/uv",
    ".m2/repository",
    ".cache/go-build",
    ".cache/pip",
    ".cache/uv",
)
SHARED_DIRS = frozenset({".local", ".config", ".cache", ".m2"})
MASKED_IN_TOOLCHAINS = (".cargo/credentials", ".cargo/credentials.toml")
SECRET_PLACES = ("/run/secrets", "/var/run/secrets")


def hidden_roots(home: Path) -> list[Path]:
    """Folders replaced by an empty tmpfs, outermost first, each existing and not a link."""
    roots: list[Path] = []
    for candidate in (Path("/home"), Path("/root"), home):
        path = Path(os.path.realpath(candidate))
        if path == Path("/") or not path.is_dir():
            continue
        if any(path == root or root in path.parents for root in roots):
            continue
        roots.append(path)
    return roots


def _toolchain_root(path: Path, roots: list[Path], home: Path) -> Path | None:
    """The folder to mount back for ``path``, or None when no hidden root holds it."""
    for root in roots:
        if path == root or root not in path.parents:
            continue
        parts = path.relative_to(root).parts
        # Below /home or /root the first part names a user; the user's own folder counts from there.
        base = root if root == home else root / parts[0]
        if base != root:
            parts = parts[1:]
        if not parts:
            return None  # a whole home folder is never mounted back
        depth = 2 if parts[0] in SHARED_DIRS and len(parts) > 1 else 1
        if parts[0] in SHARED_DIRS and len(parts) == 1:
            return None
        return base.joinpath(*parts[:depth])
    return None


def _wanted(env: dict[str, str], home: Path) -> list[Path]:
    paths = [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p.startswith("/")]
    paths += [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent]
    paths += [Path(env[name]) for name in TOOLCHAIN_VARS if env.get(name, "").startswith("/")]
    paths += [home / rel for rel in USUAL_TOOLCHAINS]
    return paths


def toolchain_mounts(home: Path, env: dict[str, str], keep_out: list[Path]) -> list[Path]:
    """Existing folders to mount back read-only, none inside ``keep_out`` (codeagent's own state)."""
    home = Path(os.path.realpath(home))
    roots = hidden_roots(home)
    found: dict[Path, None] = {}
    for wanted in _wanted(env, home):
        real = Path(os.path.realpath(wanted))
        top = _toolchain_root(real, roots, home)
        if top is None or not top.is_dir() or top.is_symlink():
            continue
        if any(top == out or out in top.parents or top in out.parents for out in keep_out):
            continue
        found[top] = None
    # Parents before children, so a nested mount is not hidden by its parent's.
    return sorted(found, key=lambda p: len(p.parts))


def masked_files(mounts: list[Path], home: Path) -> list[Path]:
    """Credential files inside mounted toolchain roots, to cover with an empty file."""
    home = Path(os.path.realpath(home))
    candidates = [home / rel for rel in MASKED_IN_TOOLCHAINS]
    return [
        path
        for path in candidates
        if path.is_file() and any(m == path.parent or m in path.parents for m in mounts)
    ]


def secret_places(extra: list[Path]) -> list[Path]:
    """Existing folders outside the homes that hold secrets: hidden behind an empty tmpfs."""
    places = [Path(p) for p in SECRET_PLACES] + extra
    seen: dict[Path, None] = {}
    for place in places:
        real = Path(os.path.realpath(place))
        if real.is_dir() and real != Path("/"):
            seen[real] = None
    return list(seen)
