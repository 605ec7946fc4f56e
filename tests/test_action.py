"""The GitHub Action (``action.yml``) and the example workflow that uses it, read with PyYAML:
every input, step output and flag they name exists (flags checked against the real
``--help``); and the action's own fix and report steps, run here in bash as the runner would
(their ``env:`` expressions filled in), fix a real repository with a scripted model against a
GitHub API on 127.0.0.1, and comment on the issue with the outcome."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
WORKFLOW = yaml.safe_load((ROOT / "docs" / "workflows" / "codeagent-fix.yml").read_text())
STEPS = {step["id"]: step for step in ACTION["runs"]["steps"] if "id" in step}
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
TOKEN = "ghs_actiontoken0123456789"
REFUSED = "GitHub Actions is not permitted to create or approve pull requests."


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in expressions(value)]
    return EXPRESSION.findall(node) if isinstance(node, str) else []


def flags(script: str) -> set[str]:
    """The options a step passes to its command: those in its ``args`` arrays."""
    lines = [line for line in script.splitlines() if "args" in line and "(" in line]
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", "\n".join(lines)))


def help_text(*command: str) -> str:
    proc = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, check=True)
    return proc.stdout


def test_every_input_and_step_output_the_action_names_exists() -> None:
    inputs, steps = ACTION["inputs"], ACTION["runs"]["steps"]
    named = expressions(ACTION)
    used_inputs = {e.split(".")[1] for e in named if e.startswith("inputs.")}
    assert used_inputs <= set(inputs) and set(inputs) - used_inputs == set()
    written = {"fix": set(re.findall(r'echo "([a-z-]+)=', STEPS["fix"]["run"]))}
    written["report"] = {"status", "pull-request", "message", "transcript"}  # ci_report.outputs
    for ref in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", " ".join(named)):
        assert ref[1] in written[ref[0]], ref
    assert all(re.fullmatch(r"[\w-]+/[\w-]+@v\d+", s["uses"]) for s in steps if "uses" in s)
    assert all(s.get("shell") == "bash" for s in steps if "run" in s)
    for step in steps:  # inputs reach scripts through env only, never pasted into them
        assert "inputs." not in step.get("run", "") and "steps." not in step.get("run", "")


def test_the_flags_the_action_passes_exist() -> None:
    passed = flags(STEPS["fix"]["run"])
    assert {"--json", "--model", "--mode", "--issue", "--pr", "--api-key-env", "--base-url"} <= passed
    fix_help = help_text("-m", "codeagent.tui.cli", "fix")
    assert {flag for flag in passed if flag not in fix_help} == set()
    report_help = help_text("-m", "codeagent.tui.ci_report")
    assert {flag for flag in flags(STEPS["report"]["run"]) if flag not in report_help} == set()


def test_the_workflow_uses_the_action_with_its_inputs() -> None:
    triggers = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["issues"]["types"] == ["labeled"] and "workflow_dispatch" in triggers
    assert WORKFLOW["permissions"] == {"contents": "write", "pull-requests": "write", "issues": "write"}
    (job,) = WORKFLOW["jobs"].values()
    (step,) = [s for s in job["steps"] if "codeagent" in s.get("uses", "")]
    assert step["uses"] in ("OWNER/codeagent@REF", "./")
    required = {name for name, spec in ACTION["inputs"].items() if spec.get("required")}
    assert required <= set(step["with"]) <= set(ACTION["inputs"])
    assert job["steps"][0]["uses"].startswith("actions/checkout@v")
    assert job["steps"][0]["with"]["persist-credentials"] is False  # codeagent pushes with the token
    assert "persist-credentials: false" in (ROOT / "action.yml").read_text()  # its usage comment too


class FakeGitHub(BaseHTTPRequestHandler):
    """Issue octo/stats#42; pull requests opened (or refused, as Actions' setting does)."""

    refuse_pulls = False
    posted: ClassVar[list[tuple[str, Any]]] = []

    def do_GET(self) -> None:
        if self.path == "/repos/octo/stats/issues/42":
            self._send(200, {"number": 42, "title": "mean() is off", "body": "mean([1, 2, 3]) gives 3"})
        else:
            self._send(200 if "/comments" in self.path else 404, [])

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == f"Bearer {TOKEN}"
        type(self).posted.append((self.path, body))
        if self.path.endswith("/pulls"):
            refused = {"message": REFUSED}
            self._send(
                *((403, refused) if self.refuse_pulls else (201, {"html_url": "https://gh.test/pull/7"}))
            )
        else:
            self._send(201, {"html_url": "https://gh.test/issues/42#issuecomment-1"})

    def _send(self, status: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def github_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    FakeGitHub.posted, FakeGitHub.refuse_pulls = [], False
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_step(
    step: dict[str, Any], context: dict[str, str], cwd: Path, base_env: dict[str, str]
) -> dict[str, str]:
    """Run one composite step's script as the runner does; return the outputs it wrote."""
    temp = Path(context["runner.temp"])
    output = temp / f"output-{step['id']}"
    output.write_text("")
    env = {
        name: EXPRESSION.sub(lambda m: context[m.group(1)], str(value)) for name, value in step["env"].items()
    }
    env = base_env | env | {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(temp / "summary.md")}
    subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=cwd,
        env=env,
        check=True,
        timeout=120,
    )
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


def run_action(repo: Path, script: Path, api: str, temp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The fix and report steps, with the action's defaults for the inputs not given here."""
    bin_dir = temp / "bin"
    (temp / "codeagent-venv" / "bin").mkdir(parents=True)
    (temp / "codeagent-venv" / "bin" / "python").symlink_to(sys.executable)
    bin_dir.mkdir()
    (bin_dir / "codeagent").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m codeagent.tui.cli "$@"\n')
    (bin_dir / "codeagent").chmod(0o755)
    context = {
        "runner.temp": str(temp),
        "github.server_url": "https://gh.test",
        "github.repository": "octo/stats",
    }
    context |= {"github.run_id": "99", "github.token": TOKEN, "github.event.issue.number": "42"}
    for name, spec in ACTION["inputs"].items():
        context[f"inputs.{name}"] = EXPRESSION.sub(
            lambda m: context[m.group(1)], str(spec.get("default", ""))
        )
    context |= {
        "inputs.model": f"scripted:{script}",
        "inputs.options": "--max-steps 20 --test-command 'exit 0'",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GH_"))}
    base |= {"PATH": f"{bin_dir}:{base['PATH']}", "RUNNER_TEMP": str(temp), "GITHUB_API_URL": api}
    base |= {"GITHUB_REPOSITORY": "octo/stats"}
    fixed = run_step(STEPS["fix"], context, repo, base)
    context |= {f"steps.fix.outputs.{k}": v for k, v in fixed.items()}
    return fixed, run_step(STEPS["report"], context, repo, base)


def with_origin(repo: Path, tmp_path: Path) -> Path:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", str(origin)], check=True)
    return origin


def test_the_action_fixes_the_issue_and_comments_with_the_pull_request(
    make_repo, write_script, fix_script, github_api, tmp_path
) -> None:
    repo = make_repo()
    origin = with_origin(repo, tmp_path)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    fixed, reported = run_action(repo, write_script(fix_script), github_api, temp)
    assert fixed["exit-code"] == "0" and json.loads(Path(fixed["result"]).read_text())["status"] == "resolved"
    assert reported["status"] == "resolved" and reported["pull-request"] == "https://gh.test/pull/7"
    assert Path(reported["transcript"]).is_file()
    (pull, comment) = FakeGitHub.posted
    assert pull[0] == "/repos/octo/stats/pulls" and pull[1]["head"] == "codeagent/issue-42"
    assert comment[0] == "/repos/octo/stats/issues/42/comments"
    body = comment[1]["body"]
    assert body.startswith("**codeagent** opened a pull request for this issue: https://gh.test/pull/7")
    assert (
        "branch `codeagent/issue-42`" in body
        and "sandbox: " in body
        and body.endswith("Run: https://gh.test/octo/stats/actions/runs/99")
    )
    assert (temp / "summary.md").read_text() == body + "\n"
    for path in (fixed["result"], reported["transcript"], temp / "summary.md"):
        assert TOKEN not in Path(path).read_text()  # GH_TOKEN was in the fix step's environment
    assert subprocess.run(["git", "-C", str(origin), "branch"], capture_output=True, text=True).stdout.strip()


def test_a_refused_pull_request_is_reported_on_the_issue_with_the_reason(
    make_repo, write_script, fix_script, github_api, tmp_path
) -> None:
    FakeGitHub.refuse_pulls = True
    repo = make_repo()
    with_origin(repo, tmp_path)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    fixed, reported = run_action(repo, write_script(fix_script), github_api, temp)
    assert fixed["exit-code"] == "3" and reported["status"] == "error" and reported["pull-request"] == ""
    body = FakeGitHub.posted[-1][1]["body"]
    assert body.startswith("**codeagent** did not open a pull request: **error** (exit 3).")
    assert "fixed and committed, but publishing failed: pull request: the GitHub API answered 403" in body
    assert "Workflow permissions" in body and TOKEN not in body
