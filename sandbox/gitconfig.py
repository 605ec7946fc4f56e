"""A git config file read as data: its entries, parsed by git itself, with nothing acted upon.

``read_config(path)`` runs ``git config --file PATH --no-includes --list -z`` from an empty
private folder with no repository, no system or global config and no ``GIT_*`` variables from
the caller, so parsing a hostile file can only parse it: ``include`` directives are listed as
entries (never followed) and no setting in it is applied. Keys come back as git spells them
internally: section and variable lower-cased, a subsection as written (``filter.X.clean``).
An entry written without ``=`` (an implicit ``true``) has the value ``None``.

Limits: a file git cannot parse raises ``GitConfigError`` with git's message; the file is read
as it is at the moment of the call (callers that need it to stay so keep its bytes' digest).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class GitConfigError(RuntimeError):
    """The file is not a config git can read; the message is git's."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # section[.subsection].name, section and name lower-cased
    value: str | None  # None: written without "=", an implicit true

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[-1]

    @property
    def subsection(self) -> str | None:
        """The quoted middle part (``filter."X".clean`` -> ``X``), which may itself hold dots."""
        rest = self.key.partition(".")[2]
        middle, dot, _ = rest.rpartition(".")
        return middle if dot else None


def neutral_env() -> dict[str, str]:
    """An environment in which git reads no configuration but what it is told to."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "HOME": "/nonexistent",
        "XDG_CONFIG_HOME": "/nonexistent",
    }


def parse_listing(raw: bytes) -> list[Entry]:
    """Entries from ``git config --list -z`` output: ``key\\nvalue\\0`` or ``key\\0``."""
    entries = []
    for record in raw.split(b"\0"):
        if not record:
            continue
        key, newline, value = record.decode("utf-8", errors="surrogateescape").partition("\n")
        entries.append(Entry(key, value if newline else None))
    return entries


def read_config(path: Path) -> list[Entry]:
    """Every entry of the config file at ``path``, in file order; ``[]`` for a missing file."""
    if not path.is_file():
        return []
    with tempfile.TemporaryDirectory(prefix="codeagent-gitcfg-") as empty:
        proc = subprocess.run(
            ["git", "config", "--file", str(path.resolve()), "--no-includes", "--list", "-z"],
            cwd=empty,
            env=neutral_env() | {"GIT_CEILING_DIRECTORIES": str(Path(empty).parent)},
            capture_output=True,
            timeout=30,
            check=False,
        )
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitConfigError(f"{path}: {message or f'git config exited {proc.returncode}'}")
    return parse_listing(proc.stdout)


USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@]*)@")
# Keys (section.name, any subsection) whose value is a credential or a way to obtain one.
CREDENTIAL_NAMES = frozenset(
    {
        "http.extraheader",
        "http.cookiefile",
        "http.proxyauthmethod",
        "imap.pass",
        "sendemail.smtppass",
    }
)
CREDENTIAL_SECTIONS = frozenset({"credential"})
URL_NAMES = frozenset({"remote.url", "remote.pushurl", "url.insteadof", "url.pushinsteadof", "http.proxy"})


def url_password(url: str) -> str | None:
    """The password (or token) in a URL's userinfo, ``https://user:TOKEN@host/``; None if none."""
    match = USERINFO.match(url)
    if match is None:
        return None
    user, colon, password = match.group("userinfo").partition(":")
    if colon:
        return password or None
    return user or None  # a token given as the user name, https://TOKEN@host/ (GitHub accepts it)


def strip_userinfo(url: str) -> str:
    """The URL without its ``user:password@`` part."""
    return USERINFO.sub(lambda m: m.group("scheme"), url, count=1)


def carries_credential(entry: Entry) -> bool:
    """Whether the entry's key or value holds a credential that a sandboxed command must not read."""
    short = f"{entry.section}.{entry.name}"
    if entry.section in CREDENTIAL_SECTIONS or short in CREDENTIAL_NAMES:
        return True
    if entry.subsection and url_password(entry.subsection) is not None:
        return True  # url."https://TOKEN@github.com/".insteadOf, http."https://u:p@host/".*
    return short in URL_NAMES and url_password(entry.value or "") is not None


def render_config(entries: list[Entry]) -> str:
    """A config file that reads back as ``entries`` (git's quoting; one section header per run)."""
    lines: list[str] = []
    header = None
    for entry in entries:
        subsection = entry.subsection
        section = entry.section
        this = f'[{section} "{_quote(subsection)}"]' if subsection is not None else f"[{section}]"
        if this != header:
            lines.append(this)
            header = this
        lines.append(
            f"\t{entry.name}" if entry.value is None else f'\t{entry.name} = "{_quote(entry.value)}"'
        )
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
