"""Bounding what one command may consume: processes and memory.

Where the machine lets us create cgroups (v2 with a delegated subtree, or v1's ``pids`` and
``memory`` hierarchies, as root in most containers), every command gets a fresh group with
``pids.max`` and a memory cap, joined by the supervisor before the command starts, removed
afterwards. That is the only bound that holds for root: root ignores ``RLIMIT_NPROC``.
Elsewhere rlimits are the fallback: ``RLIMIT_NPROC`` (counts every process of the user, so
it is only a backstop) and ``RLIMIT_AS`` (address space, which over-counts for runtimes that
reserve much more than they use). ``mechanism`` says which one is in force, so callers can
report it; with rlimits only, a fork bomb run as root is bounded by the timeout alone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


@dataclass(slots=True)
class ResourceLimits:
    max_processes: int = 1024
    max_memory_bytes: int = 8 * 2**30


@dataclass(slots=True)
class Jail:
    """One command's cgroups (possibly none) and the supervisor options that apply the limits."""

    groups: list[Path] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    mechanism: str = "rlimit"

    def close(self) -> None:
        for group in self.groups:
            for _ in range(50):  # the last processes may still be exiting
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _v2_group(limits: ResourceLimits, name: str) -> Path | None:
    if not (CGROUP / "cgroup.controllers").exists():
        return None
    own = Path((Path("/proc/self/cgroup").read_text().split("::", 1)[-1]).strip().lstrip("/"))
    group = CGROUP / own / name
    try:
        group.mkdir()
        _write(group / "pids.max", str(limits.max_processes))
        _write(group / "memory.max", str(limits.max_memory_bytes))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    return group


def _v1_groups(limits: ResourceLimits, name: str) -> list[Path]:
    settings = {
        "pids": ("pids.max", limits.max_processes),
        "memory": ("memory.limit_in_bytes", limits.max_memory_bytes),
    }
    made: list[Path] = []
    for controller, (knob, value) in settings.items():
        group = CGROUP / controller / name
        try:
            group.mkdir()
            made.append(group)
            _write(group / knob, str(value))
        except OSError:
            for done in made:
                with contextlib.suppress(OSError):
                    done.rmdir()
            return []
    return made


def jail(limits: ResourceLimits) -> Jail:
    name = f"codeagent-{os.getpid()}-{secrets.token_hex(4)}"
    group = _v2_group(limits, name)
    if group is not None:
        return Jail([group], ["--join", str(group / "cgroup.procs")], "cgroup v2")
    groups = _v1_groups(limits, name)
    if groups:
        return Jail(groups, [opt for g in groups for opt in ("--join", str(g / "cgroup.procs"))], "cgroup v1")
    options = ["--rlimit", f"NPROC={limits.max_processes}", "--rlimit", f"AS={limits.max_memory_bytes}"]
    return Jail([], options, "rlimit" + (" (root: process count unbounded)" if os.geteuid() == 0 else ""))
