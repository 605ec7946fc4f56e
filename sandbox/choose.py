"""Which confinement runs the model's commands, from the user's choice and what this machine allows.

Choices (``--sandbox`` or ``$CODEAGENT_SANDBOX``):

- ``on`` (the default): bubblewrap where it can create namespaces (``confine.probe``); else
  the Landlock fallback (``fallback.py``), ``landlock+seccomp`` where this architecture has a
  filter (``seccomp.supported``), ``landlock`` alone otherwise; where neither is possible,
  ``SandboxUnavailable`` with both reasons (the command then refuses to run the model);
- ``bubblewrap`` or ``landlock``: that one, or ``SandboxUnavailable`` saying why not (tests,
  and users who want the same confinement on every machine);
- ``off``: ``none``, the user's explicit consent to run commands unconfined.

``Choice.confinement`` is the name a run reports (its result JSON, the status bar):
``bubblewrap``, ``landlock+seccomp``, ``landlock`` or ``none``; ``Choice.fallback_reason`` says
why bubblewrap was passed over when ``on`` fell back.
"""

from __future__ import annotations

from dataclasses import dataclass

from codeagent.sandbox import landlock, seccomp
from codeagent.sandbox.confine import probe
from codeagent.sandbox.spec import BUBBLEWRAP, LANDLOCK, LANDLOCK_SECCOMP

CHOICES = ("on", "off", "bubblewrap", "landlock")
NONE = "none"


class SandboxUnavailable(Exception):
    """The chosen confinement cannot run here; the message says why."""


@dataclass(frozen=True, slots=True)
class Choice:
    confinement: str  # bubblewrap | landlock+seccomp | landlock | none
    fallback_reason: str | None = None  # why not bubblewrap, when ``on`` fell back to Landlock

    @property
    def confined(self) -> bool:
        return self.confinement != NONE


def landlock_problem() -> str | None:
    """None when the Landlock fallback can run here; otherwise why not."""
    if landlock.abi() < 1:
        return "the kernel offers no Landlock (Linux 5.13 or later, with landlock among the LSMs)"
    return None


def fallback() -> str:
    """The fallback's name on this machine."""
    return LANDLOCK_SECCOMP if seccomp.supported() else LANDLOCK


def choose(choice: str) -> Choice:
    """The confinement for ``choice`` (one of ``CHOICES``); ``SandboxUnavailable`` when it cannot run."""
    if choice not in CHOICES:
        raise SandboxUnavailable(f"unknown sandbox {choice!r}; choose one of {', '.join(CHOICES)}")
    if choice == "off":
        return Choice(NONE)
    if choice in ("on", "bubblewrap"):
        reason = probe()
        if reason is None:
            return Choice(BUBBLEWRAP)
        if choice == "bubblewrap":
            raise SandboxUnavailable(reason)
        problem = landlock_problem()
        if problem is not None:
            raise SandboxUnavailable(f"{reason}; and no fallback: {problem}")
        return Choice(fallback(), fallback_reason=reason)
    problem = landlock_problem()
    if problem is not None:
        raise SandboxUnavailable(problem)
    return Choice(fallback())
