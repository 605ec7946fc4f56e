"""``fix`` with several attempts at once: scripted models, one script per attempt, a real
repository; the attempt the tests prove right lands, and the result says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from codeagent.agent.attempts import AttemptOutcome, AttemptPlan, Evidence, Sampling, choose, sampling_plan
from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.fix import FixOptions, start_fix
from codeagent.agent.issues import from_text
from codeagent.agent.run import RunConfig
from codeagent.sandbox.confine import probe
from codeagent.tools.base import ToolSettings

REPO = {
    "stats.py": (
        "def mean(values):\n    return sum(values) / (len(values) - 1)\n\n\n"
        "def median(values):\n    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n"
    ),
    "test_stats.py": (
        "import unittest\n\nfrom stats import mean, median\n\n\n"
        "class Stats(unittest.TestCase):\n"
        "    def test_mean(self):\n        self.assertEqual(mean([1, 2, 3]), 2)\n\n"
        "    def test_median(self):\n        self.assertEqual(median([3, 1, 2]), 2)\n"
    ),
}
UNITTEST = ToolSettings(test_command="python3 -m unittest -v")  # pytest's start-up, six times, is slow
FIX_MEAN = {"path": "stats.py", "old_text": "(len(values) - 1)", "new_text": "len(values)"}
BREAK_MEDIAN = {"path": "stats.py", "old_text": "len(ordered) // 2]", "new_text": "0]"}


def scripts(tool_call, write_script) -> list[Path]:
    plan = tool_call("update_plan", items=[{"step": "fix mean", "status": "in_progress"}])
    breaks = [
        plan,
        tool_call("edit_file", **FIX_MEAN),
        tool_call("edit_file", **BREAK_MEDIAN),
        tool_call("finish", summary="fixed mean, tidied median"),
    ]
    fixes = [
        plan,
        tool_call("edit_file", **FIX_MEAN),
        tool_call("run_tests"),
        tool_call("finish", summary="mean / n"),
    ]
    idle = [tool_call("finish", summary="nothing to change")]
    return [write_script(s, f"attempt-{n}.jsonl") for n, s in enumerate((breaks, fixes, idle), 1)]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def test_the_attempt_that_fixes_the_bug_wins_and_only_its_change_lands(make_repo, write_script, tool_call):
    root = make_repo(REPO)
    paths = scripts(tool_call, write_script)
    plan = AttemptPlan(3, lambda n: ScriptedClient(paths[n - 1]), sampling_plan(3))
    options = FixOptions(root, RunConfig(UNITTEST, sandbox=probe() is None), attempts=plan)
    result = start_fix(from_text("mean() is wrong"), "scripted", lambda _: ScriptedClient(paths[0]), options)

    assert result.status == "resolved", json.dumps(result.attempts, indent=1)
    attempts = result.attempts
    assert attempts is not None and attempts["count"] == 3 and attempts["winner"] == 2
    verdicts = {a["attempt"]: a["verdict"] for a in attempts["attempts"]}
    assert verdicts == {1: "breaks 1 test(s)", 2: "passes", 3: "no change"}
    assert "attempt 2 is the only acceptable one" in attempts["why"]
    first = attempts["attempts"][0]
    assert [name.split(" ")[0] for name in first["evidence"]["broken"]] == ["test_median"]
    assert [name.split(" ")[0] for name in first["evidence"]["fixed"]] == ["test_mean"]
    assert [a["seed"] for a in attempts["attempts"]] == [None, 2, 3]

    assert result.files_changed == ["stats.py"] and result.tests_after["failed"] == 0
    landed = git(root, "show", "HEAD:stats.py")
    assert (
        "/ len(values)" in landed and "ordered[len(ordered) // 2]" in landed
    )  # attempt 1's edit did not land
    assert git(root, "status", "--porcelain") == ""
    assert result.steps == 4 and result.tokens["prompt"] > 0

    transcripts = [Path(a["transcript"]) for a in attempts["attempts"]]
    assert len(set(transcripts)) == 3 and all(path.is_file() for path in transcripts)
    records = [json.loads(line) for line in Path(result.transcript or "").read_text().splitlines()]
    assert [r["type"] for r in records] == ["meta", "attempt", "attempt", "attempt", "result"]


def outcome(number: int, patch: str = "+a\n", steps: int = 3, broken: int = 0) -> AttemptOutcome:
    evidence = Evidence(True, ["t1"], [], [f"b{n}" for n in range(broken)])
    return AttemptOutcome(number, Sampling(None, None), "finished", "", steps, patch=patch, evidence=evidence)


def test_ties_go_to_the_smaller_diff_then_the_fewer_steps_then_the_lower_number():
    winner, why = choose([outcome(1, "+a\n+b\n-c\n"), outcome(2, "+a\n"), outcome(3, "+a\n+b\n")])
    assert (
        winner.number == 2
        and why == "both acceptable; attempt 2 has the smaller diff than attempt 3 (1 vs 2)"
    )
    winner, why = choose([outcome(1, steps=5), outcome(2, steps=4)])
    assert winner.number == 2 and "fewer steps" in why
    assert choose([outcome(1), outcome(2)])[0].number == 1
    winner, why = choose([outcome(1, broken=2), outcome(2, broken=1)])  # none acceptable: fewest broken
    assert winner.number == 2 and why.startswith("none acceptable; attempt 2 has fewer tests broken")


def test_attempt_one_samples_as_a_single_run_the_others_with_their_own_seed():
    assert sampling_plan(3, 0.5) == [Sampling(None, None), Sampling(0.5, 2), Sampling(0.5, 3)]


def test_the_command_takes_one_script_per_attempt_and_prints_every_attempt(
    make_repo, write_script, tool_call
):
    root = make_repo(REPO)
    paths = scripts(tool_call, write_script)
    (root / ".codeagent").mkdir()
    (root / ".codeagent" / "config.toml").write_text('[tools]\ntest_command = "python3 -m unittest -v"\n')
    git(root, "add", "-A")
    git(root, "commit", "-qm", "settings")
    model = "scripted:" + ",".join(str(path) for path in paths)
    argv = [sys.executable, "-m", "codeagent.tui.cli", "fix", "--task", "mean() is wrong", "--attempts", "3"]
    proc = subprocess.run(
        [*argv, "--model", model, "--json"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["attempts"]["winner"] == 2 and len(result["attempts"]["attempts"]) == 3
    assert "[2] step 1" in proc.stderr and "[3] agent finished" in proc.stderr
    two = subprocess.run(
        [*argv, "--model", f"scripted:{paths[0]},{paths[1]}"], cwd=root, capture_output=True, text=True
    )
    assert two.returncode == 2 and "2 scripts for 3 attempts" in two.stderr
