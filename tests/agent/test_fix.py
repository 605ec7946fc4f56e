"""``codeagent fix`` end to end: the real command in a subprocess, a real repository, a real
HTTP server on 127.0.0.1 standing in for the GitHub API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from codeagent.agent.transcript import TRANSCRIPT


def codeagent(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sh(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_fix_resolves_a_real_bug_on_a_branch(make_repo, write_script, fix_script):
    root = make_repo()
    proc = codeagent(
        "fix",
        "--task",
        "mean() is wrong",
        "--model",
        f"scripted:{write_script(fix_script)}",
        "--json",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "resolved"
    assert result["exit_code"] == 0
    assert result["branch"] == "codeagent/task-mean-is-wrong"
    assert result["files_changed"] == ["stats.py"]
    assert result["tests_before"]["failed"] == 2 and result["tests_before"]["passed"] == 0
    assert result["tests_after"]["failed"] == 0 and result["tests_after"]["passed"] == 2
    assert result["steps"] == 6
    assert result["tokens"]["prompt"] > 0 and result["tokens"]["completion"] > 0
    assert result["wall_time_s"] > 0
    assert sh(root, "rev-parse", "--abbrev-ref", "HEAD") == result["branch"]
    assert sh(root, "rev-parse", "HEAD") == result["commit"]
    assert sh(root, "log", "-1", "--format=%s") == "codeagent: mean() is wrong"
    leftovers = sh(root, "status", "--porcelain").splitlines()  # by-products are left out of the commit
    assert all(line.startswith("?? ") and "__pycache__" in line for line in leftovers), leftovers
    assert sh(root, "show", "--name-only", "--format=", "HEAD") == "stats.py"
    records = [json.loads(line) for line in Path(result["transcript"]).read_text().splitlines()]
    assert records[0]["type"] == "meta" and records[-1]["type"] == "result"
    assert "step 1" in proc.stderr


def test_fix_reports_tokens_and_cached_tokens_per_model_call(make_repo, write_script, fix_script):
    root = make_repo()
    for number, reply in enumerate(fix_script):
        reply["usage"] = {"prompt_tokens": 1000 + 100 * number, "cached_tokens": 900 + 100 * number - 50}
    reply["usage"] = {"prompt_tokens": 2000, "cached_tokens": 0, "completion_tokens": 7}  # a cache miss
    proc = codeagent(
        "fix",
        "--task",
        "fix mean",
        "--model",
        f"scripted:{write_script(fix_script)}",
        "--json",
        "-v",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\n  tokens: 1100 prompt (950 cached), " in proc.stderr
    result = json.loads(proc.stdout)
    usage = result["usage"]
    turns = usage["turns"]
    assert [turn["prompt"] for turn in turns] == [1000, 1100, 1200, 1300, 1400, 2000]
    assert [turn["cached"] for turn in turns] == [850, 950, 1050, 1150, 1250, 0]
    assert turns[-1]["completion"] == 7 and all(turn["completion"] > 0 for turn in turns)
    assert usage["prompt_tokens"] == result["tokens"]["prompt"] == sum(turn["prompt"] for turn in turns)
    assert usage["cached_tokens"] == result["tokens"]["cached"] == 5250
    assert usage["completion_tokens"] == sum(turn["completion"] for turn in turns)
    records = [json.loads(line) for line in Path(result["transcript"]).read_text().splitlines()]
    replies = [r for r in records if r["type"] == "message" and r["message"]["role"] == "assistant"]
    assert [r["usage"]["cached_tokens"] for r in replies] == [850, 950, 1050, 1150, 1250, 0]
    assert all(
        "usage" not in r for r in records if r["type"] == "message" and r["message"]["role"] != "assistant"
    )


def test_fix_refuses_a_dirty_tree_and_keeps_changes_with_allow_dirty(make_repo, write_script, fix_script):
    root = make_repo()
    (root / "notes.txt").write_text("my notes\n")
    (root / "test_stats.py").write_text((root / "test_stats.py").read_text() + "\n# my edit\n")
    script = write_script(fix_script)
    refused = codeagent("fix", "--task", "fix mean", "--model", f"scripted:{script}", cwd=root)
    assert refused.returncode == 2
    assert "uncommitted changes" in refused.stderr and "Traceback" not in refused.stderr
    proc = codeagent(
        "fix", "--task", "fix mean", "--model", f"scripted:{script}", "--allow-dirty", "--json", cwd=root
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (root / "notes.txt").read_text() == "my notes\n"
    assert (root / "test_stats.py").read_text().endswith("# my edit\n")
    assert sh(root, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert sh(root, "show", "--name-only", "--format=", result["commit"]) == "stats.py"
    assert sh(root, "stash", "list") == ""


def test_unfinished_fix_exits_1_and_commits_the_attempt(make_repo, write_script, tool_call):
    root = make_repo()
    plan = tool_call("update_plan", items=[{"step": "try", "status": "in_progress"}])
    edit = tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="(len(values) + 1)")
    script = write_script([plan, edit, tool_call("finish", summary="changed the divisor")])
    proc = codeagent("fix", "--task", "fix mean", "--model", f"scripted:{script}", "--json", cwd=root)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "unresolved"
    assert result["message"] == "the tests fail after the change"
    assert result["commit"] and result["tests_after"]["failed"] == 2


def test_script_exhaustion_is_an_error_with_exit_3(make_repo, write_script, tool_call):
    root = make_repo()
    script = write_script([tool_call("read_file", path="stats.py")])
    proc = codeagent("fix", "--task", "fix mean", "--model", f"scripted:{script}", "--json", cwd=root)
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "error"
    assert result["commit"] is None


def start_slow_run(root: Path, write_script, fix_script, tool_call, *extra: str) -> subprocess.Popen:
    """A fix run whose fourth step sleeps the first time; returns once that step is running."""
    # Inside the workspace (the sandbox has its own /tmp; .git is read-only there), among the
    # by-products a run never commits.
    marker = root / "__pycache__" / "slept-once"
    slow = tool_call(
        "run", command=f"test -f {marker} || {{ mkdir -p {marker.parent}; touch {marker}; sleep 60; }}"
    )
    script = write_script([*fix_script[:3], slow, *fix_script[3:]])
    argv = [
        sys.executable,
        "-m",
        "codeagent.tui.cli",
        "fix",
        "--task",
        "fix mean",
        "--model",
        f"scripted:{script}",
    ]
    proc = subprocess.Popen(
        [*argv, *extra], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the run never reached the slow step"
    return proc


@pytest.mark.parametrize("recorded", ["now", "before kinds"])
def test_resume_after_a_killed_run(make_repo, write_script, fix_script, tool_call, isolated_home, recorded):
    root = make_repo()
    proc = start_slow_run(root, write_script, fix_script, tool_call)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    runs = isolated_home / "xdg_state_home" / "codeagent" / "runs"
    (run_id,) = [p.name for p in runs.iterdir()]
    if recorded == "before kinds":  # the meta line as fix wrote it before the record was typed
        path = runs / run_id / TRANSCRIPT
        meta, *rest = path.read_text().splitlines(keepends=True)
        record = json.loads(meta)
        assert record.pop("kind") == "fix"
        path.write_text(json.dumps(record) + "\n" + "".join(rest))
    resumed = codeagent("fix", "--resume", run_id, "--json", cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "resolved" and result["run_id"] == run_id
    assert result["steps"] == 7
    assert len(result["usage"]["turns"]) == 7  # the killed session's turns come from its transcript
    assert "len(values)" in (root / "stats.py").read_text()
    records = [json.loads(line) for line in (runs / run_id / TRANSCRIPT).read_text().splitlines()]
    assert [r["type"] for r in records].count("resume") == 1


def test_ctrl_c_stops_cleanly_and_the_run_resumes(make_repo, write_script, fix_script, tool_call):
    root = make_repo()
    proc = start_slow_run(root, write_script, fix_script, tool_call, "--json")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    result = json.loads(out)
    assert result["status"] == "interrupted" and "--resume" in result["message"]
    assert "Traceback" not in err
    resumed = codeagent("fix", "--resume", result["run_id"], "--json", cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "resolved"


class FakeGitHub(BaseHTTPRequestHandler):
    """A GitHub REST stand-in: one issue with one comment; records pull requests."""

    pulls: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        if self.path.startswith("/repos/octo/stats/issues/42/comments"):
            self._send(200, [{"body": "It also breaks for a single value."}])
        elif self.path == "/repos/octo/stats/issues/42":
            self._send(
                200,
                {
                    "number": 42,
                    "title": "mean() is off",
                    "body": "mean([1,2,3]) gives 3",
                    "html_url": "http://example/42",
                    "labels": [],
                    "comments": 1,
                },
            )
        else:
            self._send(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeGitHub.pulls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        self._send(201, {"html_url": "http://example/pull/7", "number": 7})

    def _send(self, status: int, data: object) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("GITHUB_API_URL", url)
    monkeypatch.setenv("GITHUB_REPOSITORY", "octo/stats")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_testtoken")
    FakeGitHub.pulls = []
    yield url
    server.shutdown()


def test_fix_issue_from_github_pushes_and_opens_a_pull_request(
    make_repo, write_script, fix_script, github, tmp_path
):
    root = make_repo()
    remote = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    sh(root, "remote", "add", "origin", str(remote))
    proc = codeagent(
        "fix", "--issue", "42", "--model", f"scripted:{write_script(fix_script)}", "--pr", "--json", cwd=root
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["branch"] == "codeagent/issue-42"
    assert result["pull_request"] == "http://example/pull/7"
    assert sh(root, "log", "-1", "--format=%s") == "Fix #42: mean() is off"
    assert sh(remote, "rev-parse", "codeagent/issue-42") == result["commit"]
    (pull,) = FakeGitHub.pulls
    assert pull["path"] == "/repos/octo/stats/pulls"
    assert pull["body"]["head"] == "codeagent/issue-42" and pull["body"]["base"] == "main"
    assert "Closes #42" in pull["body"]["body"]
    assert pull["auth"] == "Bearer ghs_testtoken"
    transcript = Path(result["transcript"]).read_text()
    assert "single value" in transcript  # the comment reached the model's task


def test_missing_issue_is_a_clear_usage_error(make_repo, write_script, fix_script, github):
    root = make_repo()
    proc = codeagent("fix", "--issue", "7", "--model", f"scripted:{write_script(fix_script)}", cwd=root)
    assert proc.returncode == 2
    # the last line is the error (a sandbox warning may come first where bubblewrap is missing)
    assert (
        proc.stderr.splitlines()[-1].startswith("codeagent: error: issue #7")
        and "Traceback" not in proc.stderr
    )
