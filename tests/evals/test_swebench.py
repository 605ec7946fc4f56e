"""SWE-bench-format files: repositories on disk (git repository, bundle, --repos folder), both
validation modes, skips with reasons, and workspaces that hold no later history."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from codeagent.evals.loader import load_tasks
from codeagent.evals.repos import materialize
from codeagent.evals.task import TaskError


def write_jsonl(path: Path, *instances: dict) -> Path:
    path.write_text("".join(json.dumps(instance) + "\n" for instance in instances))
    return path


@pytest.mark.parametrize("model", ["gold", "empty"])
def test_a_swebench_file_with_repositories_on_disk(model, swebench_repo, runs, tmp_path):
    instance = swebench_repo() | {"repo_path": "repos/calc", "environment_setup": ""}
    dataset = write_jsonl(tmp_path / "dataset.jsonl", instance)
    output = tmp_path / model
    proc = runs.codeagent(
        "eval", "--dataset", str(dataset), "--model", model, "--output", str(output), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    report = runs.reports(output)[instance["instance_id"]]
    if model == "gold":
        assert report["status"] == "resolved" and report["resolved"] is True
        assert report["tests"] == {
            "FAIL_TO_PASS": {"success": ["tests/test_calc.py::test_mean"], "failure": []},
            "PASS_TO_PASS": {"success": ["tests/test_calc.py::test_add"], "failure": []},
        }
        assert report["patch"] == instance["patch"]
    else:
        assert report["status"] == "unresolved" and report["tests"]["FAIL_TO_PASS"]["failure"]
    prediction = json.loads((output / "predictions.jsonl").read_text())
    assert prediction == {
        "instance_id": "local__calc-1",
        "model_name_or_path": model,
        "model_patch": report["patch"],
    }


def test_bundles_and_a_repos_folder(swebench_repo, runs, tmp_path):
    instance = swebench_repo()
    repos = tmp_path / "repos"
    runs.git(repos / "calc", "bundle", "create", str(tmp_path / "calc.bundle"), "--all")
    from_bundle = instance | {"instance_id": "bundle-1", "repo_path": "calc.bundle", "environment_setup": ""}
    renamed = repos / "local__calc"
    (repos / "calc").rename(renamed)
    plain = instance | {"instance_id": "plain-1"}  # SWE-bench's own fields only
    elsewhere = instance | {"instance_id": "missing-1", "repo": "someone/else"}
    dataset = write_jsonl(tmp_path / "set.jsonl", from_bundle, plain, elsewhere)
    output = tmp_path / "out"
    proc = runs.codeagent(
        "eval", "--dataset", str(dataset), "--repos", str(repos), "--setup", "", "--model", "gold",
        "--output", str(output), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = runs.reports(output)
    assert found["bundle-1"]["status"] == "resolved" and found["plain-1"]["status"] == "resolved"
    assert found["missing-1"]["status"] == "skipped"
    assert "someone/else is not under" in found["missing-1"]["message"]


def test_tasks_without_a_source_or_an_environment_are_skipped_with_the_reason(swebench_repo, runs, tmp_path):
    instance = swebench_repo()
    dataset = write_jsonl(
        tmp_path / "set.jsonl",
        instance | {"instance_id": "no-env", "repo_path": "repos/calc"},
        instance | {"instance_id": "no-source"},
    )
    output = tmp_path / "out"
    proc = runs.codeagent(
        "eval", "--dataset", str(dataset), "--model", "gold", "--output", str(output), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    found = runs.reports(output)
    assert found["no-env"]["status"] == "skipped" and "pass --setup" in found["no-env"]["message"]
    assert found["no-source"]["status"] == "skipped" and "--repos DIR" in found["no-source"]["message"]
    assert runs.summary(output)["ran"] == 0


@pytest.mark.parametrize("kind", ["repository", "bundle"])
def test_the_workspace_holds_the_base_and_its_ancestors_only(kind, swebench_repo, runs, tmp_path):
    git = runs.git
    instance = swebench_repo()
    source = tmp_path / "repos" / "calc"
    if kind == "bundle":
        git(source, "bundle", "create", str(tmp_path / "calc.bundle"), "--all")
        source = tmp_path / "calc.bundle"
    task = load_tasks(write_jsonl(tmp_path / "one.jsonl", instance | {"environment_setup": ""}))[0]
    workspace = tmp_path / "workspace"
    materialize(task, source, workspace)
    assert git(workspace, "rev-list", "--all").split() == [instance["base_commit"]]
    tip = git(tmp_path / "repos" / "calc", "rev-parse", "HEAD")
    found = subprocess.run(
        ["git", "-C", str(workspace), "cat-file", "-e", tip], capture_output=True, check=False
    )
    assert found.returncode != 0, "a later commit (the fix) is in the workspace"
    assert git(workspace, "remote") == "" and git(workspace, "status", "--porcelain") == ""
    assert (workspace / "calc.py").read_text() == (
        tmp_path / "repos" / "calc" / "calc.py"
    ).read_text().replace("len(values)", "(len(values) - 1)")


def test_file_shapes_load_alike(swebench_repo, tmp_path):
    instance = swebench_repo() | {"environment_setup": ""}
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.json").write_text(json.dumps(instance))
    (tmp_path / "list.json").write_text(json.dumps([instance]))
    shapes = [write_jsonl(tmp_path / "a.jsonl", instance), tmp_path / "list.json", tmp_path / "folder"]
    loaded = [load_tasks(path)[0] for path in shapes]
    assert all(task == loaded[0] for task in loaded)
    assert loaded[0].FAIL_TO_PASS == ["tests/test_calc.py::test_mean"]
    assert loaded[0].model_extra["version"] == "1.0"


def test_malformed_instances_are_named_errors(swebench_repo, runs, tmp_path):
    instance = swebench_repo()
    del instance["FAIL_TO_PASS"]
    dataset = write_jsonl(tmp_path / "bad.jsonl", {**swebench_repo("other"), "instance_id": "fine"}, instance)
    with pytest.raises(TaskError, match=r"bad.jsonl:2: FAIL_TO_PASS: Field required"):
        load_tasks(dataset)
    proc = runs.codeagent("eval", "--dataset", str(dataset), "--model", "gold", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"codeagent: error: {dataset}:2: FAIL_TO_PASS: Field required"
    ]
