"""The runner's contract: deterministic shards, limits, resume, Ctrl-C, compare, and one-line
errors for mistakes in the call."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeagent.evals.loader import BUILTIN
from codeagent.evals.selection import SelectionError, parse_shard, select

PROJECT = BUILTIN / "tabular"  # six quick Python tasks


def test_shards_split_deterministically(builtin_tasks):
    ids = sorted(t.instance_id for t in builtin_tasks)
    shards = [[t.instance_id for t in select(builtin_tasks, (i, 4))] for i in range(1, 5)]
    assert sorted(i for shard in shards for i in shard) == ids
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shards == [
        [t.instance_id for t in select(list(reversed(builtin_tasks)), (i, 4))] for i in range(1, 5)
    ]
    assert [t.instance_id for t in select(builtin_tasks, (2, 4), limit=3)] == shards[1][:3]
    assert parse_shard(" 3/8 ") == (3, 8)
    for bad in ("0/2", "3/2", "1/0", "x", "1-2"):
        with pytest.raises(SelectionError):
            parse_shard(bad)


def test_shards_through_the_command(runs, tmp_path):
    seen = []
    for index in (1, 2, 3):
        output = tmp_path / f"shard{index}"
        proc = runs.codeagent(
            "eval", "--tasks", str(PROJECT), "--model", "empty", "--shard", f"{index}/3", "--output", str(output),
            cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads((output / "run.json").read_text())["shard"] == f"{index}/3"
        seen.append(set(runs.reports(output)))
    assert [len(s) for s in seen] == [2, 2, 2] and len(set.union(*seen)) == 6


def test_limit_then_resume_runs_only_the_rest(runs, tmp_path):
    output = tmp_path / "out"
    first = runs.codeagent(
        "eval",
        "--tasks",
        str(PROJECT),
        "--model",
        "gold",
        "--limit",
        "2",
        "--output",
        str(output),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    done = {p.name: p.stat().st_mtime_ns for p in (output / "tasks").iterdir()}
    assert len(done) == 2
    again = runs.codeagent(
        "eval", "--tasks", str(PROJECT), "--model", "gold", "--output", str(output), cwd=tmp_path
    )
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("codeagent: error: ")
    assert "pass --resume" in again.stderr
    other = runs.codeagent(
        "eval", "--tasks", str(PROJECT), "--model", "empty", "--resume", "--output", str(output), cwd=tmp_path
    )
    assert other.returncode == 2 and "resume it with the same --model" in other.stderr
    resumed = runs.codeagent(
        "eval", "--tasks", str(PROJECT), "--model", "gold", "--resume", "--output", str(output), cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (output / "tasks").iterdir() if p.name in done} == done
    assert len(runs.reports(output)) == 6 and runs.summary(output)["resolved"] == 6
    assert resumed.stderr.count("resolved (") == 4  # progress lines: only the four it ran


def interruptible_set(swebench_repo, tmp_path: Path) -> Path:
    """Four tasks; the third one's environment setup takes a minute."""
    instance = swebench_repo() | {"repo_path": "repos/calc"}
    setups = ["", "", "sleep 60", ""]
    lines = [
        json.dumps(instance | {"instance_id": f"calc-{n}", "environment_setup": s})
        for n, s in enumerate(setups)
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ctrl_c_keeps_finished_reports_and_resume_continues(swebench_repo, runs, tmp_path):
    dataset = interruptible_set(swebench_repo, tmp_path)
    output = tmp_path / "out"
    argv = [sys.executable, "-m", "codeagent.tui.cli", "eval", "--dataset", str(dataset), "--model", "gold"]
    proc = subprocess.Popen([*argv, "--output", str(output)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list((output / "tasks").glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # calc-2 is in its 60 s setup now
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 30
    assert "continue with --resume" in stderr and "Traceback" not in stderr
    kept = runs.reports(output)
    assert set(kept) == {"calc-0", "calc-1"}
    dataset.write_text(dataset.read_text().replace('"sleep 60"', '""'))
    resumed = runs.codeagent(*argv[3:], "--resume", "--output", str(output), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert set(runs.reports(output)) == {"calc-0", "calc-1", "calc-2", "calc-3"}
    assert runs.reports(output)["calc-0"] == kept["calc-0"]
    assert runs.summary(output)["resolved"] == 4


def test_compare_two_runs(runs, tmp_path):
    for model in ("gold", "empty"):
        proc = runs.codeagent(
            "eval", "--tasks", str(PROJECT), "--model", model, "--output", str(tmp_path / model), cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
    proc = runs.codeagent("eval", "compare", str(tmp_path / "gold"), str(tmp_path / "empty"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resolved in A only (6):" in proc.stdout
    assert "tabular__median-even-count: resolved -> unresolved" in proc.stdout
    assert "| resolved | 6/6 (100.0%) | 0/6 (0.0%) |" in proc.stdout
    same = runs.codeagent("eval", "compare", str(tmp_path / "gold"), str(tmp_path / "gold"), cwd=tmp_path)
    assert "no status changes across 6 common tasks" in same.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "/no/such/tasks"], "/no/such/tasks does not exist"),
        (["--shard", "3/2"], "--shard 3/2: I must be between 1 and N"),
        (["--shard", "two"], "--shard takes I/N"),
        (["--parallel", "0"], "must be positive"),
        (["--repos", "/no/such/dir"], "--repos /no/such/dir is not a folder"),
        (["--model", "scripted:/no/such/script.jsonl"], "script /no/such/script.jsonl does not exist"),
        (["compare", "/no/a", "/no/b"], "/no/a is not an eval run's output folder"),
    ],
)
def test_mistakes_are_one_line_errors(args, message, runs, tmp_path):
    proc = runs.codeagent("eval", "--tasks", str(PROJECT), *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("codeagent: warning:")]
    assert len(lines) == 1 and lines[0].startswith("codeagent: error: ") and message in lines[0], proc.stderr


def test_fail_under_makes_ci_fail(runs, tmp_path):
    args = ["eval", "--tasks", str(PROJECT), "--limit", "1", "--fail-under", "100"]
    assert (
        runs.codeagent(*args, "--model", "gold", "--output", str(tmp_path / "a"), cwd=tmp_path).returncode
        == 0
    )
    assert (
        runs.codeagent(*args, "--model", "empty", "--output", str(tmp_path / "b"), cwd=tmp_path).returncode
        == 1
    )
