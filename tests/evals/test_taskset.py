"""The built-in task set validates itself: the gold patches resolve every task, the empty
patch none, over the whole set, with the real command at --parallel 2."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from codeagent.evals.loader import BUILTIN
from codeagent.evals.task import touched_test_files
from codeagent.evals.toolchains import missing

LANGUAGES = ("python", "node", "go")


@pytest.mark.parametrize("model", ["gold", "empty"])
def test_validation_modes_over_the_whole_set(model, builtin_tasks, runs, tmp_path):
    output = tmp_path / model
    proc = runs.codeagent("eval", "--model", model, "--parallel", "2", "--output", str(output), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = runs.reports(output)
    assert set(found) == {t.instance_id for t in builtin_tasks}
    skipped = {t.instance_id: reason for t in builtin_tasks if (reason := missing(t.requires))}
    for instance_id, report in found.items():
        if instance_id in skipped:
            assert report["status"] == "skipped" and report["message"] == skipped[instance_id]
        elif model == "gold":
            assert report["status"] == "resolved", (
                instance_id,
                report["message"],
                report["test_output_tail"],
            )
        else:
            assert report["status"] == "unresolved" and report["patch"] == "", (
                instance_id,
                report["message"],
            )
            assert report["tests"]["FAIL_TO_PASS"]["failure"], instance_id
    result = runs.summary(output)
    assert result["resolved"] == (result["ran"] if model == "gold" else 0)
    assert result["ran"] == len(builtin_tasks) - len(skipped)
    assert f"model `{model}`" in proc.stdout and "| harness overhead (s) |" in proc.stdout
    assert (output / "summary.md").read_text().startswith("# Eval summary")


def test_the_set_is_big_varied_and_small_on_disk(builtin_tasks):
    assert len(builtin_tasks) >= 30
    assert len({t.repo for t in builtin_tasks}) >= 8
    languages = Counter(next(r for r in t.requires if r in LANGUAGES) for t in builtin_tasks)
    assert languages["python"] > languages["node"] + languages["go"] and languages["node"] and languages["go"]
    kinds = {t.model_extra["bug_kind"] for t in builtin_tasks}
    for kind in (
        "off-by-one",
        "encoding",
        "time zones",
        "concurrency",
        "API misuse",
        "edge case",
        "wrong default",
    ):
        assert kind in kinds
    assert any(kind.startswith("regression") for kind in kinds)
    size = sum(p.stat().st_size for p in BUILTIN.rglob("*") if p.is_file())
    assert size < 400_000
    assert not [p for p in BUILTIN.rglob("*") if p.name in ("node_modules", "vendor", "__pycache__", ".git")]


def test_problem_statements_give_away_neither_tests_nor_fix(builtin_tasks):
    for task in builtin_tasks:
        assert task.FAIL_TO_PASS and touched_test_files(task), task.instance_id
        for name in task.FAIL_TO_PASS:
            assert name.rsplit("::", 1)[-1] not in task.problem_statement, task.instance_id
        added = [
            line[1:].strip() for line in task.patch.splitlines() if line.startswith("+") and len(line) > 30
        ]
        assert not [line for line in added if line in task.problem_statement], task.instance_id


def test_a_missing_toolchain_is_a_skip_with_the_reason(builtin_tasks, runs, tmp_path):
    node_project = next(t for t in builtin_tasks if "node" in t.requires).instance_id.split("__")[0]
    output = tmp_path / "out"
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin")}  # no node, no go, no git
    proc = runs.codeagent(
        "eval", "--model", "gold", "--sandbox", "off", "--tasks", str(BUILTIN / node_project),
        "--output", str(output), cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = runs.reports(output)
    assert found and all(r["status"] == "skipped" for r in found.values())
    assert all(
        "needs Node.js" in r["message"] and "node is not installed" in r["message"] for r in found.values()
    )
    assert runs.summary(output)["ran"] == 0 and "skipped:" in proc.stdout
