"""The confinements the attack battery runs under: a test that takes ``confinement`` runs once
with bubblewrap and once with the Landlock fallback (forced, as ``--sandbox landlock`` does),
each skipped with the reason where this machine cannot run it."""

from __future__ import annotations

import pytest

from codeagent.sandbox.choose import SandboxUnavailable, choose

BUBBLEWRAP, LANDLOCK = "bubblewrap", "landlock"


def _available(choice: str) -> tuple[str | None, str | None]:
    """(the confinement's name, None) or (None, why it cannot run here)."""
    try:
        return choose(choice).confinement, None
    except SandboxUnavailable as err:
        return None, str(err)


CONFINEMENTS = {choice: _available(choice) for choice in (BUBBLEWRAP, LANDLOCK)}
# named as runs report them (the fallback is landlock+seccomp where there is a filter)
NAMES = {choice: name or choice for choice, (name, _) in CONFINEMENTS.items()}


@pytest.fixture(params=list(NAMES.values()))
def confinement(request: pytest.FixtureRequest) -> str:
    """``bubblewrap`` or the fallback's name here (``landlock+seccomp`` or ``landlock``)."""
    choice = BUBBLEWRAP if request.param == BUBBLEWRAP else LANDLOCK
    reason = CONFINEMENTS[choice][1]
    if reason is not None:
        pytest.skip(f"no {choice} here: {reason}")
    return request.param
