"""``codeagent eval --attempts 3`` with a script per attempt: the attempt the repository's
visible tests prove right is graded, and the report and summary say which won and why."""

from __future__ import annotations

import json
from typing import Any


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}],
    }


PLAN = call("update_plan", items=[{"step": "fix mean", "status": "in_progress"}])
FIX_MEAN = call("edit_file", path="calc.py", old_text="(len(values) - 1)", new_text="len(values)")
BREAK_ADD = call("edit_file", path="calc.py", old_text="a + b", new_text="a - b")
SCRIPTS = {
    1: [PLAN, FIX_MEAN, BREAK_ADD, call("finish", summary="mean fixed, add tidied")],
    2: [PLAN, FIX_MEAN, call("finish", summary="mean divides by n")],
    3: [PLAN, call("finish", summary="nothing to do")],
}


def test_eval_grades_the_winning_attempt_and_reports_every_attempt(swebench_repo, runs, tmp_path):
    instance = swebench_repo() | {"repo_path": "repos/calc", "environment_setup": ""}
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text(json.dumps(instance) + "\n")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for number, replies in SCRIPTS.items():
        lines = "".join(json.dumps(reply) + "\n" for reply in replies)
        (scripts / f"{instance['instance_id']}.{number}.jsonl").write_text(lines)
    output = tmp_path / "out"
    proc = runs.codeagent(
        "eval", "--dataset", str(dataset), "--model", f"scripted:{scripts}", "--attempts", "3", "--no-repo-map",
        "--output", str(output), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = runs.reports(output)[instance["instance_id"]]
    assert report["status"] == "resolved" and report["steps"] == 3
    made = report["attempts"]
    assert made["count"] == 3 and made["winner"] == 2 and "only acceptable" in made["why"]
    assert [a["verdict"] for a in made["attempts"]] == ["breaks 1 test(s)", "passes", "no change"]
    assert made["attempts"][0]["evidence"]["broken"] == ["tests/test_calc.py::test_add"]
    assert made["attempts"][1]["files_changed"] == ["calc.py"] and "a - b" not in report["patch"]
    transcripts = sorted(p.name for p in (output / "transcripts").iterdir())
    assert transcripts == [f"{instance['instance_id']}.{n}.jsonl" for n in (1, 2, 3)]
    assert report["transcript"].endswith(".2.jsonl")
    summary = (output / "summary.md").read_text()
    assert "| 3 | 2 (1: breaks 1 test(s); 2: passes; 3: no change) |" in summary
    assert json.loads((output / "run.json").read_text())["attempts"] == 3
