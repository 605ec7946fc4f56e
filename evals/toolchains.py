"""Toolchains a task may require, and why a task cannot run here.

A registry of names to probes: each probe is a short command that exits 0 when the
toolchain works. ``missing(names)`` runs the probes (once per process each, unconfined:
they only ask the host what is installed) and returns the reason the first missing one
gives, so a task whose toolchain is absent is reported as skipped with that reason,
never failed. Probes do not check versions beyond what the tasks need.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from dataclasses import dataclass

PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Toolchain:
    argv: tuple[str, ...]  # "{python}" is the Python running codeagent
    needs: str  # what to install, in the skip reason


TOOLCHAINS: dict[str, Toolchain] = {
    "python": Toolchain(("{python}", "-c", "pass"), "Python"),
    "pytest": Toolchain(
        ("{python}", "-c", "import pytest"), "pytest in codeagent's Python (pip install pytest)"
    ),
    "node": Toolchain(("node", "--eval", "require('node:test')"), "Node.js 18 or newer (node --test)"),
    "go": Toolchain(("go", "version"), "Go (the go command)"),
    "cargo": Toolchain(("cargo", "--version"), "Rust's cargo"),
}


def missing(names: list[str]) -> str | None:
    """None when every toolchain in ``names`` works here; otherwise the skip reason."""
    for name in names:
        reason = _probe(name)
        if reason:
            return reason
    return None


@functools.cache
def _probe(name: str) -> str | None:
    toolchain = TOOLCHAINS.get(name)
    if toolchain is None:
        return f"unknown toolchain {name!r} (known: {', '.join(sorted(TOOLCHAINS))})"
    argv = [sys.executable if part == "{python}" else part for part in toolchain.argv]
    if shutil.which(argv[0]) is None:
        return f"needs {toolchain.needs}: {argv[0]} is not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"needs {toolchain.needs}: {' '.join(argv)} did not answer within {PROBE_TIMEOUT_S:g}s"
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        return (
            f"needs {toolchain.needs}: {' '.join(argv)} failed ({detail[-1] if detail else proc.returncode})"
        )
    return None
