"""``fix`` checks the model before it makes a branch, and leaves no empty branch behind when it
fails: real repositories, the real command in a subprocess, real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codeagent.agent.clients.preflight import endpoint_problem
from codeagent.agent.clients.settings import LOCAL, RemoteSettings
from codeagent.agent.fix import FixOptions, start_fix
from codeagent.agent.issues import from_text
from codeagent.agent.rollback import BranchMade
from codeagent.agent.run import RunConfig
from codeagent.sandbox.git import GitRepo


def codeagent(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def branches(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(root), "for-each-ref", "--format=%(refname:short)", "refs/heads/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def current(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "branch", "--show-current"], check=True, capture_output=True, text=True
    ).stdout.strip()


class Endpoint(BaseHTTPRequestHandler):
    """GET /v1/models answers ``listing``; POST (a chat request) answers 400, an error never retried."""

    listing = 200

    def do_GET(self) -> None:
        self._send(self.listing, {"data": [{"id": "served"}]} if self.listing == 200 else {"error": "no"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(400, {"error": {"message": "this model cannot chat"}})

    def _send(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[Endpoint]]]:
    handler = type("Handler", (Endpoint,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def env_without_keys(**extra: str) -> dict[str, str]:
    keys = (
        "OPENAI_API_KEY",
        "CODEAGENT_API_KEY",
        "ANTHROPIC_API_KEY",
        "CODEAGENT_BASE_URL",
        "OPENAI_BASE_URL",
    )
    return {**{k: v for k, v in os.environ.items() if k not in keys}, "CODEAGENT_SANDBOX": "off", **extra}


def assert_refused_before_git(proc: subprocess.CompletedProcess, root: Path, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("codeagent: error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert branches(root) == ["main"] and current(root) == "main"


def test_no_key_for_openai_is_refused_at_once_without_a_branch(make_repo):
    root = make_repo()
    started = time.monotonic()
    proc = codeagent("fix", "--task", "x", "--model", "remote:NAME", cwd=root, env=env_without_keys())
    assert time.monotonic() - started < 20  # no retries against an unreachable API
    assert_refused_before_git(proc, root, "no API key")
    assert "OPENAI_API_KEY" in proc.stderr


def test_a_key_the_endpoint_refuses(make_repo, endpoint):
    url, handler = endpoint
    handler.listing = 401
    root = make_repo()
    env = env_without_keys(CODEAGENT_BASE_URL=url, CODEAGENT_API_KEY="sk-wrong")
    proc = codeagent("fix", "--task", "x", "--model", "remote:NAME", cwd=root, env=env)
    assert_refused_before_git(proc, root, "refused the API key")
    assert "sk-wrong" not in proc.stderr


def test_an_endpoint_that_does_not_answer(make_repo):
    root = make_repo()
    url = f"http://127.0.0.1:{closed_port()}/v1"
    proc = codeagent("fix", "--task", "x", "--model", f"local:{url}", cwd=root, env=env_without_keys())
    assert_refused_before_git(proc, root, "does not answer")


def test_a_model_error_after_the_branch_puts_the_user_back_twice_over(make_repo, endpoint):
    url, _ = endpoint
    root = make_repo()
    for _ in range(2):
        proc = codeagent(
            "fix", "--task", "x", "--model", f"local:{url}", "--json", cwd=root, env=env_without_keys()
        )
        assert proc.returncode == 3, proc.stderr
        result = json.loads(proc.stdout)
        assert result["status"] == "error" and "cannot chat" in result["message"]
        assert "codeagent/task-x was deleted" in result["message"]
        assert branches(root) == ["main"] and current(root) == "main"


def test_an_exhausted_script_leaves_the_branch_it_did_not_make(make_repo, write_script, tool_call):
    root = make_repo()
    subprocess.run(["git", "-C", str(root), "branch", "codeagent/task-x"], check=True)
    script = write_script([tool_call("read_file", path="stats.py")])
    proc = codeagent("fix", "--task", "x", "--model", f"scripted:{script}", cwd=root, env=env_without_keys())
    assert proc.returncode == 3, proc.stderr
    assert "codeagent/task-x-2 was deleted" in proc.stdout
    assert branches(root) == ["codeagent/task-x", "main"] and current(root) == "main"


class Interrupting:
    """A client factory whose first call is the user's Ctrl-C (after the branch exists)."""

    def __call__(self, consumed: int) -> object:
        raise KeyboardInterrupt


def test_ctrl_c_before_the_run_starts_deletes_the_branch_and_restores_the_stash(make_repo):
    root = make_repo()
    (root / "stats.py").write_text("# the user's own edit\n")
    options = FixOptions(root, RunConfig(sandbox=False), allow_dirty=True)
    with pytest.raises(KeyboardInterrupt):
        start_fix(from_text("x"), "scripted:none", Interrupting(), options)
    assert branches(root) == ["main"] and current(root) == "main"
    assert (root / "stats.py").read_text() == "# the user's own edit\n"


def test_a_branch_with_commits_or_changes_is_kept(make_repo):
    root = make_repo()
    repo = GitRepo.open(root)
    base = repo.run(["rev-parse", "HEAD"]).strip()
    repo.run(["checkout", "-q", "-b", "codeagent/task-y"])
    made = BranchMade("codeagent/task-y", base, "main", None)
    (root / "new.py").write_text("x = 1\n")
    assert not made.undo_if_empty(repo)  # a change in the work tree: the run's, kept
    repo.run(["add", "new.py"])
    repo.run(["commit", "-qm", "the run's commit"])
    assert not made.undo_if_empty(repo)
    assert "codeagent/task-y" in branches(root) and current(root) == "codeagent/task-y"


def test_each_provider_that_needs_a_key_says_which(make_repo):
    root = make_repo()
    for spec, variable in (("anthropic:claude", "ANTHROPIC_API_KEY"), ("deepseek:chat", "DEEPSEEK_API_KEY")):
        proc = codeagent(
            "fix", "--task", "x", "--model", spec, cwd=root, env=env_without_keys(DEEPSEEK_API_KEY="")
        )
        assert_refused_before_git(proc, root, "no API key")
        assert variable in proc.stderr


def test_an_endpoint_without_a_listing_still_counts_as_answering(endpoint):
    url, handler = endpoint
    handler.listing = 404  # llama.cpp and some proxies have no /models
    assert endpoint_problem("local", RemoteSettings.from_env("m", url, provider=LOCAL, env={})) is None
    handler.listing = 403
    problem = endpoint_problem("local", RemoteSettings.from_env("m", url, "sk-x", provider=LOCAL, env={}))
    assert problem is not None and "HTTP 403" in problem and "sk-x" not in problem
