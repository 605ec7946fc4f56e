"""``codeagent bench sandbox``: what the sandbox adds to each command the model runs.

Median wall time of a trivial command (``true``) run plainly and confined (bubblewrap),
and of the host-side git a command brings along: the checkpoint taken before a command
that changes files, and a ``git status``. The repository is a throw-away one of five
files (``tool_calls.make_repo``). Refuses when no sandbox can run here.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from codeagent.bench.tool_calls import make_repo


def bench_sandbox(calls: int = 100) -> dict[str, Any]:
    """Median wall time of a trivial command (``true``) with and without the sandbox, and of the
    host-side git a command brings along: a checkpoint before it, a ``git status``."""
    from codeagent.sandbox.checkpoint import Checkpoints
    from codeagent.sandbox.confine import SandboxSpec, probe, run_confined
    from codeagent.sandbox.git import git
    from codeagent.sandbox.limits import ResourceLimits, jail
    from codeagent.sandbox.process import run_command

    reason = probe()
    if reason is not None:
        raise RuntimeError(f"no sandbox to measure: {reason}")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-") as tmp:
        root = Path(tmp) / "repo"
        make_repo(root, files=5)
        spec = SandboxSpec(root)

        def plain() -> None:
            run_command(["true"], root, timeout=30, max_output_chars=1000, env=env)

        def confined() -> None:
            run_confined(spec, ["true"], timeout=30, max_output_chars=1000, env=env)

        checkpoints = Checkpoints(root, Path(tmp) / "store")

        def checkpoint() -> None:
            (root / "pkg" / "mod_0.py").write_text(f"x = {time.perf_counter()}\n")
            checkpoints.snapshot("bench")

        def status() -> None:
            git(["status", "--porcelain"], root)

        timed = (
            ("plain", plain),
            ("sandboxed", confined),
            ("checkpoint", checkpoint),
            ("git_status", status),
        )
        results = {name: round(_median_ms(fn, calls), 2) for name, fn in timed}
    probe_jail = jail(ResourceLimits())
    probe_jail.close()
    return {
        "scenario": "sandbox",
        "calls": calls,
        "median_ms": results,
        "overhead_ms": round(results["sandboxed"] - results["plain"], 2),
        "limits": probe_jail.mechanism,
        "machine": f"{platform.machine()}, python {platform.python_version()}",
    }


def _median_ms(fn: Any, calls: int) -> float:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000
