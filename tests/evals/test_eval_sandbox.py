"""``codeagent eval --sandbox``: the confinement is chosen as for ``fix`` (``sandbox.choose``),
runs the setup, the agent's commands and the grading tests, and is recorded in ``run.json``,
``summary.json`` and the printed summary. The Landlock fallback is shown to be the one in
force by what it refuses and bubblewrap allows: a setup command that makes a folder at the top
of the workspace."""

from __future__ import annotations

import json

import pytest

from codeagent.evals.loader import BUILTIN
from codeagent.sandbox.choose import SandboxUnavailable, choose


def _available(choice: str) -> tuple[str | None, str]:
    try:
        return choose(choice).confinement, ""
    except SandboxUnavailable as err:
        return None, str(err)


FALLBACK, NO_FALLBACK = _available("landlock")
BUBBLEWRAP, NO_BUBBLEWRAP = _available("bubblewrap")
needs_landlock = pytest.mark.skipif(FALLBACK is None, reason=f"no Landlock here: {NO_FALLBACK}")


@needs_landlock
def test_gold_resolves_under_the_fallback_and_the_run_says_so(runs, tmp_path):
    output = tmp_path / "out"
    proc = runs.codeagent(
        "eval", "--model", "gold", "--sandbox", "landlock", "--tasks", str(BUILTIN / "cfgparse"),
        "--limit", "2", "--output", str(output), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = runs.summary(output)
    assert summary["resolved"] == summary["ran"] == 2 and summary["confinement"] == FALLBACK
    assert json.loads((output / "run.json").read_text())["confinement"] == FALLBACK
    assert f"commands confined by: {FALLBACK}" in proc.stdout
    assert f"commands confined by: {FALLBACK}" in (output / "summary.md").read_text()


@pytest.mark.parametrize(
    ("choice", "confinement", "status", "why_not"),
    [("landlock", FALLBACK, "error", NO_FALLBACK), ("bubblewrap", BUBBLEWRAP, "resolved", NO_BUBBLEWRAP)],
)
def test_the_chosen_confinement_runs_the_setup(
    runs, swebench_repo, tmp_path, choice, confinement, status, why_not
):
    if confinement is None:
        pytest.skip(f"no {choice} here: {why_not}")
    # Landlock gives no right on the workspace folder itself: no new top-level entries there.
    instance = swebench_repo() | {"repo_path": "repos/calc", "environment_setup": "mkdir made-at-the-top"}
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(json.dumps(instance) + "\n")
    output = tmp_path / choice
    proc = runs.codeagent(
        "eval", "--dataset", str(dataset), "--model", "gold", "--sandbox", choice, "--output", str(output),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = runs.reports(output)[instance["instance_id"]]
    assert report["status"] == status, report.get("message")
    if status == "error":
        assert "environment setup failed" in report["message"]
    assert runs.summary(output)["confinement"] == confinement


def test_sandbox_off_is_recorded_as_none(runs, swebench_repo, tmp_path):
    instance = swebench_repo() | {"repo_path": "repos/calc", "environment_setup": ""}
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(json.dumps(instance) + "\n")
    output = tmp_path / "off"
    proc = runs.codeagent(
        "eval", "--dataset", str(dataset), "--model", "gold", "--sandbox", "off", "--output", str(output),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0 and "the sandbox is off" in proc.stderr
    assert runs.summary(output)["confinement"] == "none" and runs.summary(output)["resolved"] == 1
