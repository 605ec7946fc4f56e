"""The agent paths end to end: a scripted model (per-task scripts, one script for all) and
the embedded runtime with a tiny random model shared by parallel workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codeagent.evals.loader import BUILTIN

PROJECT = BUILTIN / "tabular"


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}],
    }


PLAN = call("update_plan", items=[{"step": "fix median", "status": "in_progress"}])
FIX_MEDIAN = [
    PLAN,
    call("run", command="cat tests/test_stats.py; git log --all --oneline"),
    call("read_file", path="tabular/stats.py"),
    call(
        "edit_file",
        path="tabular/stats.py",
        old_text="    return data[len(data) // 2]\n",
        new_text="    middle = len(data) // 2\n    if len(data) % 2:\n        return data[middle]\n"
        "    return (data[middle - 1] + data[middle]) / 2\n",
    ),
    call("finish", summary="median averages the two middle values of an even-sized list"),
]
GIVE_UP = [PLAN, call("finish", summary="could not find it")]


def write_script(path: Path, replies: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(reply) + "\n" for reply in replies))
    return path


def test_scripted_agent_per_task_scripts(runs, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    write_script(scripts / "tabular__median-even-count.jsonl", FIX_MEDIAN)
    write_script(scripts / "tabular__sample-stdev.jsonl", GIVE_UP)
    output = tmp_path / "out"
    proc = runs.codeagent(
        "eval", "--tasks", str(PROJECT), "--model", f"scripted:{scripts}", "--parallel", "2", "--no-repo-map",
        "--output", str(output), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = runs.reports(output)
    fixed, gave_up = found["tabular__median-even-count"], found["tabular__sample-stdev"]
    assert fixed["status"] == "resolved", fixed
    assert fixed["agent_status"] == "finished" and fixed["steps"] == 5
    assert fixed["tokens"]["prompt"] > 0 and fixed["tokens"]["completion"] > 0
    assert fixed["patch"].startswith("diff --git a/tabular/stats.py b/tabular/stats.py")
    assert 0 < fixed["agent_time_s"] < fixed["wall_time_s"]
    assert fixed["overhead_s"] == round(fixed["wall_time_s"] - fixed["agent_time_s"], 3)
    assert gave_up["status"] == "unresolved" and gave_up["patch"] == "" and gave_up["steps"] == 2
    no_script = [
        r for i, r in found.items() if i not in ("tabular__median-even-count", "tabular__sample-stdev")
    ]
    assert len(no_script) == 4 and all(
        r["status"] == "error" and "no script for" in r["message"] for r in no_script
    )
    # What the agent saw: the repository at its base commit, without the hidden tests or later history.
    transcript = [json.loads(line) for line in Path(fixed["transcript"]).read_text().splitlines()]
    seen = "\n".join(str(r["message"].get("content")) for r in transcript if r["type"] == "message")
    assert "def test_median_odd" in seen and "test_median_even" not in seen
    assert "Initial commit" in seen and "median() is wrong for an even number of values" in seen
    assert fixed["patch"] not in seen


def test_one_script_for_every_task(runs, tmp_path):
    script = write_script(tmp_path / "give-up.jsonl", GIVE_UP)
    output = tmp_path / "out"
    proc = runs.codeagent(
        "eval", "--tasks", str(PROJECT), "--model", f"scripted:{script}", "--limit", "2", "--no-repo-map",
        "--output", str(output), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = runs.reports(output)
    assert len(found) == 2 and all(r["status"] == "unresolved" and r["steps"] == 2 for r in found.values())
    assert runs.summary(output)["metrics"]["steps"] == {"median": 2, "total": 4}


def test_embedded_tiny_model_shared_by_parallel_tasks(tiny_model, runs, tmp_path):
    output = tmp_path / "out"
    proc = runs.codeagent(
        "eval", "--tasks", str(PROJECT), "--model", str(tiny_model), "--limit", "2", "--parallel", "2",
        "--max-steps", "2", "--max-output-tokens", "16", "--no-repo-map", "--output", str(output),
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("codeagent: model loaded once") == 1
    found = runs.reports(output)
    assert len(found) == 2
    for report in found.values():  # nonsense output: unresolved (or an unusable patch), never a crash
        assert report["status"] in ("unresolved", "patch_failed"), report
        assert report["steps"] >= 1 and report["tokens"]["prompt"] > 0
        assert report["agent_status"] in ("budget", "format", "finished", "error")
