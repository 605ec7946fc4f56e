"""Where the process's own credentials are written down, read as (name, value) candidates.

Sources, each read as data (nothing in them is run or acted upon):

- git config files: the repository's (``.git/config``, ``config.worktree``, through a ``.git``
  file's ``gitdir:`` and ``commondir`` as well), the user's (``$GIT_CONFIG_GLOBAL`` or
  ``~/.gitconfig``, ``$XDG_CONFIG_HOME/git/config``), the system's (``$GIT_CONFIG_SYSTEM`` or
  ``/etc/gitconfig``), every file these ``include.path`` / ``includeIf.*.path`` (how
  ``actions/checkout`` v6 stores its token), and settings passed in the environment
  (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``, ``GIT_CONFIG_PARAMETERS``).
  In them: ``http.*.extraheader`` (``actions/checkout``'s ``AUTHORIZATION: basic <b64>``: the
  entry, the credential, the decoded ``user:password`` and the password; a ``bearer`` or
  ``token`` credential; GitLab's ``PRIVATE-TOKEN: <token>``), URL userinfo anywhere in a key or
  a value (``remote.*.url``, ``pushurl``, ``url.<base>.insteadOf``, ``http.proxy``,
  ``submodule.*.url``), variables named like a password or token (``sendemail.smtpPass``), and
  ``password=`` written into an inline ``credential.helper`` script;
- credential stores: ``~/.git-credentials``, ``$XDG_CONFIG_HOME/git/credentials`` and any
  ``store --file=PATH`` a helper names (URLs with userinfo), ``~/.netrc`` or ``$NETRC``
  (``password``), the GitHub CLI's ``hosts.yml`` (``oauth_token``).

A URL's password is a credential unless it is a well-known placeholder (``x-oauth-basic``);
its user name only when it looks like a token (a known token prefix, or 20 characters or
more), as in ``https://ghp_...@github.com``. Names never hold the values: URL userinfo in a
config key is shown as ``***``.

Limits: only regular files under 1 MiB are read (a planted FIFO or device cannot block the
run); a config git cannot parse is scanned for URLs only; credentials held by a helper
program, an agent or a keyring are out of reach (they are never in a file codeagent reads).
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote

from codeagent import xdg
from codeagent.sandbox.gitconfig import Entry, GitConfigError, read_config

Pair = tuple[str, str]  # (name, value)

URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#@\s'\"]+)@")
TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-")
PLACEHOLDERS = frozenset({"x-access-token", "x-oauth-basic", "oauth2", "gitlab-ci-token", "x-token-auth"})
SECRET_VARIABLE = re.compile(r"(?<!ask)(?:pass|passwd|password|token|secret)$")
HELPER_PASSWORD = re.compile(r"password=([^\s'\"\\;]+)")
HELPER_STORE_FILE = re.compile(r"--file[= ]([^\s'\"]+)")
MAX_FILE_BYTES = 1 << 20
MAX_INCLUDE_DEPTH = 5
MAX_ENV_ENTRIES = 1000  # GIT_CONFIG_COUNT is read up to this


def token_like(text: str) -> bool:
    return text.startswith(TOKEN_PREFIXES) or len(text) >= 20


def url_parts(name: str, text: str) -> list[Pair]:
    """The password (or token-like user name) of every URL with userinfo in ``text``."""
    pairs = []
    for match in URL_USERINFO.finditer(text):
        user, _, password = match.group(1).partition(":")
        pairs += userinfo_parts(name, "URL", unquote(user), unquote(password))
    return pairs


def userinfo_parts(name: str, where: str, user: str, password: str) -> list[Pair]:
    """The password of ``user:password`` unless a placeholder; the user when it looks like a token.
    Named ``NAME (WHERE password)`` and ``NAME (WHERE user)``."""
    pairs = []
    if password and password.lower() not in PLACEHOLDERS:
        pairs.append((f"{name} ({where} password)", password))
    if token_like(user) and user.lower() not in PLACEHOLDERS:
        pairs.append((f"{name} ({where} user)", user))
    return pairs


def header_parts(name: str, value: str) -> list[Pair]:
    """An HTTP header line (``NAME: [scheme] credential``): the line, the credential and,
    for ``basic``, the decoded ``user:password`` and its parts."""
    header = value.partition(":")[2].strip() if ":" in value else value.strip()
    scheme, _, rest = header.partition(" ")
    credential = rest.strip() or scheme
    pairs = [(name, value.strip()), (f"{name} (credential)", credential)]
    if scheme.lower() == "basic" and rest:
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return pairs
        user, _, password = decoded.partition(":")
        pairs += [(f"{name} (decoded)", decoded), *userinfo_parts(name, "decoded", user, password)]
    return pairs


def described(key: str) -> str:
    """A config key fit to name a secret: URL userinfo in it (``url.<base>.insteadOf``) elided."""
    return re.sub(r"(://)[^/?#@\s]*@", r"\1***@", key)


def entry_parts(label: str, entry: Entry) -> list[Pair]:
    name = f"{label} {described(entry.key)}"
    value = entry.value or ""
    variable = entry.name.lower()
    pairs = url_parts(name, entry.key) + url_parts(name, value)
    if variable == "extraheader" and value:
        pairs += header_parts(name, value)
    elif SECRET_VARIABLE.search(variable):
        pairs.append((name, value))
    elif entry.section.lower() == "credential" and variable == "helper":
        pairs += [(f"{name} (password)", found) for found in HELPER_PASSWORD.findall(value)]
    return pairs


def env_config(environ: Mapping[str, str]) -> list[tuple[str, Entry]]:
    """Config entries passed to git through the environment, with the variable that holds each."""
    entries = []
    count = environ.get("GIT_CONFIG_COUNT", "")
    for index in range(min(int(count), MAX_ENV_ENTRIES) if count.isdigit() else 0):
        key, value = environ.get(f"GIT_CONFIG_KEY_{index}"), environ.get(f"GIT_CONFIG_VALUE_{index}")
        if key is not None:
            entries.append((f"GIT_CONFIG_VALUE_{index}", Entry(key, value)))
    try:
        words = shlex.split(environ.get("GIT_CONFIG_PARAMETERS", ""))
    except ValueError:
        words = []
    for word in words:
        key, equals, value = word.partition("=")
        entries.append(("GIT_CONFIG_PARAMETERS", Entry(key, value if equals else None)))
    return entries


def read_small(path: Path) -> str:
    """A regular file's text (at most ``MAX_FILE_BYTES``); ``""`` for anything else."""
    try:
        if not path.is_file():
            return ""
        with path.open("rb") as handle:
            return handle.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


def repo_config_files(root: Path) -> list[Path]:
    """The repository's own config files, through a ``.git`` file and ``commondir`` too."""
    dot_git = root / ".git"
    git_dir = dot_git
    if dot_git.is_file():
        pointer = read_small(dot_git).strip()
        if not pointer.startswith("gitdir:"):
            return []
        git_dir = (root / pointer.removeprefix("gitdir:").strip()).resolve()
    common = read_small(git_dir / "commondir").strip()
    dirs = [git_dir] + ([(git_dir / common).resolve()] if common else [])
    return [folder / name for folder in dirs for name in ("config", "config.worktree")]


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or "/nonexistent")


def _config_home(environ: Mapping[str, str]) -> Path:
    return xdg.base("config", environ, _home(environ))


def user_config_files(environ: Mapping[str, str]) -> list[Path]:
    home, xdg = _home(environ), _config_home(environ)
    return [
        Path(environ.get("GIT_CONFIG_GLOBAL") or home / ".gitconfig"),
        xdg / "git" / "config",
        Path(environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"),
    ]


def config_entries(paths: Iterable[Path], home: Path) -> Iterator[tuple[str, Entry]]:
    """(file, entry) for each file and each file it includes, each file once."""
    pending = [(path, 0) for path in paths]
    seen: set[Path] = set()
    while pending:
        path, depth = pending.pop(0)
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        try:
            entries = read_config(path)
        except GitConfigError:
            yield from ((str(path), Entry("unparsed", line)) for line in read_small(path).splitlines())
            continue
        for entry in entries:
            yield str(path), entry
            value = entry.value or ""
            if entry.name == "path" and entry.section in ("include", "includeif") and value:
                target = home / value[2:] if value.startswith("~/") else Path(value)
                if depth < MAX_INCLUDE_DEPTH:
                    pending.append((path.parent / target, depth + 1))  # an absolute target stays as is


def store_files(environ: Mapping[str, str], helpers: Iterable[str]) -> list[Path]:
    home, xdg = _home(environ), _config_home(environ)
    named = [Path(path) for helper in helpers for path in HELPER_STORE_FILE.findall(helper)]
    return [home / ".git-credentials", xdg / "git" / "credentials", *named]


def stored(root: Path | None, environ: Mapping[str, str]) -> list[Pair]:
    """Every credential candidate in the git config and credential files this process uses."""
    home = _home(environ)
    files = (repo_config_files(root) if root is not None else []) + user_config_files(environ)
    labelled = [*config_entries(files, home), *env_config(environ)]
    pairs = [pair for label, entry in labelled for pair in entry_parts(_label(label, root), entry)]
    helpers = [entry.value or "" for _, entry in labelled if entry.name == "helper"]
    for path in store_files(environ, helpers):
        pairs += url_parts(str(path), read_small(path))
    pairs += _netrc(environ, home) + _gh_hosts(environ)
    return pairs


def _label(label: str, root: Path | None) -> str:
    if root is not None and label.startswith(str(root) + "/"):
        return label[len(str(root)) + 1 :]
    return label


def _netrc(environ: Mapping[str, str], home: Path) -> list[Pair]:
    path = Path(environ.get("NETRC") or home / ".netrc")
    words = read_small(path).split()
    return [(f"{path} password", words[i + 1]) for i, word in enumerate(words[:-1]) if word == "password"]


def _gh_hosts(environ: Mapping[str, str]) -> list[Pair]:
    folder = environ.get("GH_CONFIG_DIR")
    path = (Path(folder) if folder else _config_home(environ) / "gh") / "hosts.yml"
    found = re.findall(r"^\s*oauth_token:\s*['\"]?([^\s'\"]+)", read_small(path), flags=re.MULTILINE)
    return [(f"{path} oauth_token", token) for token in found]
