"""The environment a model-written command sees: the user's, minus anything secret.

A variable is dropped when its name (case-insensitive) has one of ``SECRET_MARKERS``
(``TOKEN``, ``SECRET``, ``PASSWORD``, ``API_KEY``, ``CREDENTIAL``, ``AUTH``, ...) as an
underscore-separated part, ends in ``TOKEN``, ``KEY``, ``SECRET`` or the like, starts
with one of ``SECRET_PREFIXES`` (``AWS_``, ``AZURE_``, ``GOOGLE_``, ``OPENAI_``, ...), is one
of ``SECRET_NAMES`` (``SSH_AUTH_SOCK``, ``KUBECONFIG``, ...) or is named by the user; and
also when its value equals the value of a dropped variable (a secret under an innocent
alias). Names are a heuristic: a secret stored under a plain name the user did not list
still passes, which is why the sandbox also hides credential files and cuts the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET_MARKERS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "AUTH",
    "SESSION",
    "COOKIE",
    "SIGNING_KEY",
    "CLIENT_KEY",
)
SECRET_PREFIXES = (
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCP_",
    "OPENAI_",
    "ANTHROPIC_",
    "CODEAGENT_",
    "HF_",
    "HUGGING",
)
SECRET_NAMES = frozenset(
    {
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "GPG_AGENT_INFO",
        "KUBECONFIG",
        "DOCKER_CONFIG",
        "NETRC",
        "DATABASE_URL",
        "PGPASSFILE",
        "VAULT_ADDR",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
    }
)
SECRET_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY", "KEY")
MARKER_RE = re.compile(r"(?:^|_)(?:" + "|".join(SECRET_MARKERS) + r")(?:_|$)")
MIN_ALIAS_LENGTH = 8  # shorter values (like "1") are too common to treat as aliases


def is_secret_name(name: str, extra: frozenset[str] = frozenset()) -> bool:
    upper = name.upper()
    return (
        upper in SECRET_NAMES
        or upper in extra
        or upper.startswith(SECRET_PREFIXES)
        or upper.endswith(SECRET_ENDINGS)
        or MARKER_RE.search(upper) is not None
    )


def scrub_env(env: Mapping[str, str], extra_names: Iterable[str] = ()) -> dict[str, str]:
    extra = frozenset(name.upper() for name in extra_names)
    secrets = {
        value for name, value in env.items() if is_secret_name(name, extra) and len(value) >= MIN_ALIAS_LENGTH
    }
    return {
        name: value for name, value in env.items() if not is_secret_name(name, extra) and value not in secrets
    }
