"""Known secret values: the process's own tokens and keys, found in text and redacted from it.

``KnownSecrets`` holds (name, value) pairs; the name says where the value came from (a
variable, a git config key, a file) and is the only thing ever shown of it. ``gather`` builds
one from:

- the environment: every variable ``environment.is_secret_name`` flags, plus user-listed
  names, except names flagged by their provider prefix alone (``AWS_REGION``,
  ``CODEAGENT_MODEL``, ``OPENAI_BASE_URL`` are settings: matching ``us-east-1`` would refuse
  ordinary commits) and ``HANDLE_NAMES`` / ``HANDLE_PREFIXES``, which point at a credential
  (a socket, a file, an address) rather than hold one; and the password of a URL with
  userinfo in any variable (``PIP_INDEX_URL=https://user:pw@...``, ``HTTPS_PROXY``);
- the git config and credential files this process and the repository use
  (``credentials.stored``: ``actions/checkout``'s ``extraheader``, tokens in remote URLs and
  ``insteadOf`` rules, ``~/.git-credentials``, ``~/.netrc``, ``gh``'s ``hosts.yml``, ...);
- values the caller passes (a model client's API key, a GitHub client's token).

Each value also stands for the forms it commonly leaks as: base64 (unpadded, so the padded
form matches too), base64 of ``x-access-token:VALUE`` (the header ``actions/checkout``
writes), URL-encoding, and each long line of a multi-line value (a PEM key's body).

``redact`` replaces every occurrence with ``[secret:NAME]``; occurrences that overlap (one
value inside or across another) are merged into one marker naming both, so no part of either
survives. ``found`` names the secrets a text holds; ``redact_data`` / ``found_in`` walk JSON-like
data (dicts, lists, strings).

Limits: a value shorter than ``MIN_SECRET_LENGTH`` (8) characters, made of digits only and
shorter than 16 (process ids, ports), or a well-known placeholder (``x-access-token``,
``true``) is no secret: matching it would redact ordinary text. Matching is exact, so a
secret that was transformed some other way (split, reversed, hex, re-encoded) is not seen,
and a secret streamed a token at a time is seen only once whole. This is the last line; the
first is that tools and commands cannot read the secrets at all (``confine``, ``environment``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from codeagent.sandbox import credentials, environment
from codeagent.sandbox.environment import SECRET_PREFIXES, is_secret_name

MIN_SECRET_LENGTH = 8
MIN_LINE_LENGTH = 16  # lines of a multi-line secret worth matching on their own
HANDLE_NAMES = environment.HANDLE_NAMES | {
    "GOOGLE_APPLICATION_CREDENTIALS",
    "SESSION_MANAGER",
    "DESKTOP_SESSION",
}
HANDLE_PREFIXES = ("XDG_", "DBUS_")  # desktop session ids and bus addresses
COMMON_VALUES = credentials.PLACEHOLDERS | {"true", "false", "none", "null", "undefined", "password"}


def is_secret_value(value: str) -> bool:
    """Whether ``value`` is long and uncommon enough to be matched as a secret."""
    text = value.strip()
    return (
        len(text) >= MIN_SECRET_LENGTH
        and text.lower() not in COMMON_VALUES
        and not (text.isdigit() and len(text) < 16)
    )


def holds_secret(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """Whether a variable of this name holds a secret value (``extra``: upper-cased names)."""
    upper = name.upper()
    if upper in extra:
        return True
    if upper in HANDLE_NAMES or upper.startswith(HANDLE_PREFIXES):
        return False
    prefix = next((p for p in SECRET_PREFIXES if upper.startswith(p)), "")
    return is_secret_name(upper[len(prefix) :])


def leak_forms(name: str, value: str) -> list[tuple[str, str]]:
    """The forms a secret commonly leaks as, each named after the secret and the form: the
    encodings of a single word (a token, a password), the lines of a multi-line value."""
    if "\n" in value:
        lines = [line.strip() for line in value.splitlines()]
        return [(f"{name} (line)", line) for line in lines if len(line) >= MIN_LINE_LENGTH]
    if len(value.split()) > 1:
        return []
    return [
        (f"{name} (base64)", _b64(value)),
        (f"{name} (base64 x-access-token)", _b64(f"x-access-token:{value}")),
        (f"{name} (url-encoded)", quote(value, safe="")),
    ]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class KnownSecrets:
    pairs: tuple[tuple[str, str], ...] = ()  # (name, value): values unique, longest first

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> KnownSecrets:
        """Secrets from (name, value) pairs: short and common values dropped, leak forms added."""
        expanded = []
        for name, value in pairs:
            if is_secret_value(value):
                expanded += [(name, value.strip()), *leak_forms(name, value.strip())]
        return cls._normalised(expanded)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], extra_names: Iterable[str] = ()) -> KnownSecrets:
        extra = frozenset(name.upper() for name in extra_names)
        pairs = []
        for name, value in environ.items():
            if holds_secret(name, extra):
                pairs.append((name, value))
            pairs += credentials.url_parts(name, value)
        return cls.of(pairs)

    @classmethod
    def gather(
        cls,
        root: Path | None,
        environ: Mapping[str, str] | None = None,
        extra_names: Iterable[str] = (),
        values: Mapping[str, str] | None = None,
    ) -> KnownSecrets:
        """Everything this process knows as secret: its environment, the git config and
        credential files it and the repository at ``root`` use, and ``values``."""
        environ = os.environ if environ is None else environ
        found = cls.from_environment(environ, extra_names)
        return found | cls.of([*credentials.stored(root, environ), *(values or {}).items()])

    @classmethod
    def _normalised(cls, pairs: Iterable[tuple[str, str]]) -> KnownSecrets:
        by_value: dict[str, str] = {}
        for name, value in pairs:
            if is_secret_value(value):
                by_value.setdefault(value, name)
        values = sorted(by_value, key=len, reverse=True)
        named = [(_safe_name(by_value[value], values), value) for value in values]
        return cls(tuple(named))

    def __or__(self, other: KnownSecrets) -> KnownSecrets:
        return KnownSecrets._normalised([*self.pairs, *other.pairs])

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.pairs]

    def _spans(self, text: str) -> list[tuple[int, int, list[str]]]:
        """(start, end, names) of every occurrence, overlapping ones merged (named after each
        that reaches past the others; one inside another adds nothing); in text order."""
        hits = []
        for name, value in self.pairs:
            start = text.find(value)
            while start != -1:
                hits.append((start, start + len(value), name))
                start = text.find(value, start + 1)
        merged: list[tuple[int, int, list[str]]] = []
        for start, end, name in sorted(hits):
            if merged and start < merged[-1][1]:
                first, last, names = merged[-1]
                if end > last:
                    merged[-1] = (first, end, names if name in names else [*names, name])
            else:
                merged.append((start, end, [name]))
        return merged

    def redact(self, text: str) -> str:
        """``text`` with each occurrence of a secret replaced by ``[secret:NAME]``."""
        spans = self._spans(text) if self.pairs and text else []
        if not spans:
            return text
        pieces, cursor = [], 0
        for start, end, names in spans:
            pieces += [text[cursor:start], f"[secret:{' + '.join(names)}]"]
            cursor = end
        return "".join(pieces) + text[cursor:]

    def found(self, text: str) -> list[str]:
        """Names of the secrets in ``text``, in order of first appearance."""
        names: list[str] = []
        for _, _, group in self._spans(text) if self.pairs and text else []:
            names += [name for name in group if name not in names]
        return names

    def redact_data(self, data: Any) -> Any:
        """A copy of JSON-like ``data`` with every string (keys too) redacted."""
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {self.redact_data(key): self.redact_data(value) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return type(data)(self.redact_data(item) for item in data)
        return data

    def found_in(self, data: Any) -> list[str]:
        """Names of the secrets in any string of JSON-like ``data``."""
        names: list[str] = []
        for text in _strings(data):
            names += [name for name in self.found(text) if name not in names]
        return names


def _strings(data: Any) -> Iterable[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(data, list | tuple):
        for item in data:
            yield from _strings(item)


def _safe_name(name: str, values: list[str]) -> str:
    """``name``, unless it holds a secret value itself (then a generic one)."""
    return "a credential" if any(value in name for value in values) else name
