"""The environment a model-written command sees: the user's, minus anything secret.

A variable is dropped when its name, compared case-insensitively:

- has one of ``SECRET_MARKERS`` as an underscore-separated part (``TOKEN``, ``SECRET``,
  ``PASSWORD``, ``PASSWD``, ``PASSPHRASE``, ``API_KEY``, ``APIKEY``, ``ACCESS_KEY``,
  ``PRIVATE_KEY``, ``CREDENTIAL(S)``, ``AUTH``, ``SESSION``, ``COOKIE``, ...), so
  ``DB_PASSWORD`` and ``MY_SESSION_ID`` go but ``GIT_AUTHOR_NAME`` stays;
- ends in one of ``SECRET_ENDINGS`` (``TOKEN``, ``SECRET``, ``PASSWORD``, ``KEY``, ...), which
  catches run-together names such as ``GITHUBTOKEN`` or ``STRIPEKEY``;
- starts with one of ``SECRET_PREFIXES``: ``AWS_``, ``AZURE_``, ``GOOGLE_``, ``GCP_``,
  ``OPENAI_``, ``ANTHROPIC_``, ``CODEAGENT_`` (cloud and model-provider settings, and our own);
- is one of ``SECRET_NAMES`` (``SSH_AUTH_SOCK``, ``GPG_AGENT_INFO``, ``XAUTHORITY``,
  ``KUBECONFIG``, ``DATABASE_URL``, ``MYSQL_PWD``, ...: handles to credentials rather than
  credentials), or is named by the user (``extra_names``);

and also when its value equals the value of a dropped variable (a secret under an innocent
alias), for values of at least ``MIN_ALIAS_LENGTH`` characters. So ``GITHUB_TOKEN``,
``GH_TOKEN``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``HF_TOKEN``, ``NPM_TOKEN``,
``CODEAGENT_API_KEY`` and ``GOOGLE_APPLICATION_CREDENTIALS`` all go, while ``PATH``, ``HOME``,
``LANG``, ``HF_HOME`` or ``VIRTUAL_ENV`` stay.

Limits: names are a heuristic. A secret stored under a plain name the user did not list
still passes, and a command can still read credential files; hiding those and cutting the
network is the confinement layer's job (``confine.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET_MARKERS = (
    "TOKEN",
    "TOKENS",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "OAUTH",
    "AUTHORIZATION",
    "BEARER",
    "SESSION",
    "COOKIE",
    "SIGNING_KEY",
    "CLIENT_KEY",
)
SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "OPENAI_", "ANTHROPIC_", "CODEAGENT_")
# Variables that point at a credential (a socket, a file, a helper) rather than hold one.
HANDLE_NAMES = frozenset(
    {
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "GPG_AGENT_INFO",
        "XAUTHORITY",
        "KRB5CCNAME",
        "KUBECONFIG",
        "DOCKER_CONFIG",
        "NETRC",
        "PGPASSFILE",
        "VAULT_ADDR",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
    }
)
SECRET_NAMES = HANDLE_NAMES | {"DATABASE_URL", "MYSQL_PWD"}
SECRET_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY", "KEY", "CREDENTIALS")
MARKER_RE = re.compile(r"(?:^|_)(?:" + "|".join(SECRET_MARKERS) + r")(?:_|$)")
MIN_ALIAS_LENGTH = 8  # shorter values (like "1" or "true") are too common to treat as aliases


def is_secret_name(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """Whether a variable of this name is dropped; ``extra`` holds upper-cased user-listed names."""
    upper = name.upper()
    return (
        upper in SECRET_NAMES
        or upper in extra
        or upper.startswith(SECRET_PREFIXES)
        or upper.endswith(SECRET_ENDINGS)
        or MARKER_RE.search(upper) is not None
    )


def scrub_env(env: Mapping[str, str], extra_names: Iterable[str] = ()) -> dict[str, str]:
    """``env`` without secret-named variables and without variables that alias their values."""
    extra = frozenset(name.upper() for name in extra_names)
    secret_names = {name for name in env if is_secret_name(name, extra)}
    secret_values = {env[name] for name in secret_names if len(env[name]) >= MIN_ALIAS_LENGTH}
    return {
        name: value for name, value in env.items() if name not in secret_names and value not in secret_values
    }
