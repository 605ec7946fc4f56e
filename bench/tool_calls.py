"""``codeagent bench tools``: what a tool call costs, alone and inside the loop.

Builds a throw-away git repository of 200 small Python files, times each tool through
``run_tool`` (median of N calls), then runs the whole plan-act loop with a scripted model
that makes N cheap calls, so the per-step figure includes message assembly, event
emission and the fsynced transcript write. The model's own time is not part of it.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from codeagent.agent.clients import make_client
from codeagent.agent.loop import Limits
from codeagent.agent.session import SessionSpec, new_agent
from codeagent.agent.transcript import TRANSCRIPT, Transcript
from codeagent.tools.base import ToolEnv, run_tool
from codeagent.tools.registry import get_tool

CALLS: dict[str, dict[str, Any]] = {
    "read_file": {"path": "pkg/mod_7.py"},
    "list_files": {"pattern": "*.py"},
    "search": {"pattern": "def helper_1[0-9]"},
    "run": {"command": "true"},
    "update_plan": {"items": [{"step": "measure", "status": "in_progress"}]},
    "repo_map": {},
}


def make_repo(root: Path, files: int = 200) -> None:
    (root / "pkg").mkdir(parents=True)
    for n in range(files):
        body = "".join(f"def helper_{n}_{k}(x):\n    return x + {k}\n\n" for k in range(10))
        (root / "pkg" / f"mod_{n}.py").write_text(f"from pkg import mod_{(n + 1) % files}\n\n{body}")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)


def time_tool(name: str, args: dict[str, Any], env: ToolEnv, calls: int) -> float:
    tool = get_tool(name)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        observation = run_tool(tool, args, env)
        samples.append(time.perf_counter() - started)
        if not observation.ok:
            raise RuntimeError(f"{name} failed during the benchmark: {observation.text}")
    return statistics.median(samples) * 1000


def time_loop(env: ToolEnv, workdir: Path, calls: int) -> float:
    script = workdir / "script.jsonl"
    plan = json.dumps({"items": [{"step": "measure", "status": "in_progress"}]})
    lines = [
        {
            "content": "",
            "tool_calls": [
                {"id": f"c{n}", "type": "function", "function": {"name": "update_plan", "arguments": plan}}
            ],
        }
        for n in range(calls)
    ]
    script.write_text("".join(json.dumps(line) + "\n" for line in lines))
    transcript = Transcript(workdir / TRANSCRIPT)
    spec = SessionSpec(
        make_client(f"scripted:{script}"), env, Limits(max_steps=calls), transcript, repo_map=False
    )
    agent = new_agent(spec, "benchmark")
    started = time.perf_counter()
    agent.run()
    return (time.perf_counter() - started) / calls * 1000


def bench_tools(calls: int = 100) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-") as tmp:
        root = Path(tmp) / "repo"
        make_repo(root)
        env = ToolEnv(root)
        env.settings.cache_dir = Path(tmp) / "cache"
        per_tool = {name: round(time_tool(name, args, env, calls), 3) for name, args in CALLS.items()}
        loop = round(time_loop(env, Path(tmp), calls), 3)
    return {
        "scenario": "tools",
        "calls": calls,
        "median_ms_per_call": per_tool,
        "loop_ms_per_step_with_update_plan": loop,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
    }
