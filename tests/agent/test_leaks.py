"""Secrets kept out of what ``codeagent fix`` sends and records, tried as an attacker would:
a scripted model that copies the process's tokens (its environment's, or the repository's
``.git/config`` credentials) into a file, a commit message or a pull request. Each run must
refuse, commit and push nothing, and leave no value in the transcript or the printed result."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeagent.agent import events as ev
from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.fix import FixOptions, start_fix
from codeagent.agent.issues import IssueSpec
from codeagent.agent.leaks import Refused, check_commit, commit_diff, per_file
from codeagent.agent.run import RunConfig
from codeagent.agent.session import SessionSpec, new_agent
from codeagent.agent.transcript import Transcript
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import ToolEnv

pytestmark = pytest.mark.attack("secrets")  # counted in the battery's report

ENV_TOKEN = "ghs_EnvToken0123456789abcd"
HEADER_TOKEN = "ghs_CheckoutToken987654321"
REMOTE_TOKEN = "ghp_RemoteUrlToken24680ace"


def codeagent(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codeagent.tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | env,
    )


def sh(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def fix_with(script: Path, root: Path, env: dict[str, str]) -> tuple[dict, str, str]:
    """Run ``fix --json``; return the result, the transcript's text and everything printed."""
    proc = codeagent(
        "fix", "--task", "fix mean", "--model", f"scripted:{script}", "--json", cwd=root, env=env
    )
    result = json.loads(proc.stdout)
    return result, Path(result["transcript"]).read_text(), proc.stdout + proc.stderr


def assert_nothing_committed(root: Path, base: str) -> None:
    assert sh(root, "rev-parse", "HEAD") == base
    assert sh(root, "log", "--all", "--format=%H").splitlines() == [base]


def test_an_environment_token_read_from_a_tool_and_written_to_a_file_is_refused(
    make_repo, write_script, fix_script, tool_call
):
    root = make_repo()
    (root / "ci").mkdir()
    (root / "ci" / "last-run.log").write_text(f"pushing with {ENV_TOKEN}\n")  # a log the model reads
    sh(root, "add", "ci")
    sh(root, "commit", "-qm", "ci log")
    base = sh(root, "rev-parse", "HEAD")
    read = tool_call("read_file", path="ci/last-run.log")
    leak = tool_call("write_file", path="notes/token.txt", content=f"found it: {ENV_TOKEN}\n")
    script = write_script([fix_script[0], read, *fix_script[1:4], leak, fix_script[-1]])
    result, transcript, printed = fix_with(script, root, {"GITHUB_TOKEN": ENV_TOKEN})
    assert result["status"] == "refused" and result["exit_code"] == 4
    assert result["message"].startswith("refused to commit: a known secret appeared")
    assert "GITHUB_TOKEN in the diff of notes/token.txt" in result["message"]
    assert result["commit"] is None
    assert sh(root, "rev-parse", "HEAD") == base
    assert (root / "notes" / "token.txt").is_file()  # left in the working tree for the user to see
    for text in (transcript, printed, json.dumps(result)):
        assert ENV_TOKEN not in text and b64(ENV_TOKEN).rstrip("=") not in text
    records = [json.loads(line) for line in transcript.splitlines()]
    tool_results = [
        r["message"]["content"] for r in records if r["type"] == "message" and r["message"]["role"] == "tool"
    ]
    assert "1| pushing with [secret:GITHUB_TOKEN]" in tool_results  # what the model was shown


def test_a_token_in_the_finish_summary_is_refused_before_the_commit(
    make_repo, write_script, fix_script, tool_call
):
    root = make_repo()
    base = sh(root, "rev-parse", "HEAD")
    finish = tool_call("finish", summary=f"mean fixed. (debug: {ENV_TOKEN})")
    script = write_script([*fix_script[:-1], finish])
    result, transcript, printed = fix_with(script, root, {"DEPLOY_TOKEN": ENV_TOKEN})
    assert result["status"] == "refused" and result["exit_code"] == 4
    assert "DEPLOY_TOKEN in the commit message" in result["message"]
    assert "in summary" in result["message"]  # the result held it too, and was redacted
    assert result["summary"] == "mean fixed. (debug: [secret:DEPLOY_TOKEN])"
    assert_nothing_committed(root, base)
    for text in (transcript, printed):
        assert ENV_TOKEN not in text


def test_git_config_credentials_copied_into_a_file_are_refused(
    make_repo, write_script, fix_script, tool_call
):
    root = make_repo()
    header = f"AUTHORIZATION: basic {b64('x-access-token:' + HEADER_TOKEN)}"  # as actions/checkout writes it
    sh(root, "config", "http.https://github.com/.extraheader", header)
    sh(root, "remote", "add", "origin", f"https://x-access-token:{REMOTE_TOKEN}@github.com/octo/stats.git")
    base = sh(root, "rev-parse", "HEAD")
    copy = tool_call("run", command="cat .git/config > config-copy.txt; true")
    leak = tool_call("write_file", path="creds.txt", content=f"{header}\n{HEADER_TOKEN}\n{REMOTE_TOKEN}\n")
    script = write_script([*fix_script[:3], copy, leak, *fix_script[3:]])
    result, transcript, printed = fix_with(script, root, {})
    assert result["status"] == "refused"
    message = result["message"]
    assert message.startswith("refused to commit") and "in the diff of creds.txt" in message
    assert ".git/config http.https://github.com/.extraheader" in message
    assert ".git/config remote.origin.url (URL password)" in message
    assert_nothing_committed(root, base)
    for text in (transcript, printed, json.dumps(result)):
        for value in (HEADER_TOKEN, REMOTE_TOKEN, b64("x-access-token:" + HEADER_TOKEN)):
            assert value not in text


class PullRequests:
    """Where the pull request would be opened: records each one instead."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str, str, str]] = []

    def create_pull_request(self, head: str, base: str, title: str, body: str) -> str:
        self.opened.append((head, base, title, body))
        return "http://example/pull/1"


def test_a_token_in_the_pull_request_title_is_neither_pushed_nor_opened(
    make_repo, write_script, fix_script, tmp_path
):
    root = make_repo()
    remote = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    sh(root, "remote", "add", "origin", str(remote))
    pulls = PullRequests()
    options = FixOptions(
        root,
        RunConfig(sandbox=False),
        push=True,
        pr=True,
        pull_requests=pulls,
        secret_values={"GitHub client token": ENV_TOKEN},
    )
    title = "mean() is off " + "by one " * 10 + f"(seen with {ENV_TOKEN})"  # past the commit subject's 72
    script = write_script(fix_script)
    issue = IssueSpec(7, title, "mean([1, 2, 3]) gives 3")
    result = start_fix(issue, "scripted", lambda consumed: ScriptedClient(script, consumed), options)
    assert result.status == "refused" and result.exit_code == 4
    assert result.message.startswith("refused to push or open a pull request")
    assert "GitHub client token in the pull request title" in result.message
    assert result.commit and ENV_TOKEN not in sh(root, "log", "-1", "--format=%B")
    assert pulls.opened == [] and sh(remote, "for-each-ref") == ""
    assert ENV_TOKEN not in Path(result.transcript or "").read_text()


def test_an_interactive_session_redacts_tool_results_events_and_transcript(
    make_repo, write_script, tool_call, tmp_path, monkeypatch
):
    """The TUI's path: no secrets passed, so the session gathers the process's own."""
    monkeypatch.setenv("NPM_TOKEN", ENV_TOKEN)
    root = make_repo()
    (root / "build.log").write_text(f"npm login with {ENV_TOKEN}\n")
    reply = tool_call("read_file", path="build.log")
    reply["content"] = f"I see {ENV_TOKEN}"  # the model's own words carry it too
    plan = tool_call("update_plan", items=[{"step": "look", "status": "in_progress"}])
    leak = tool_call("write_file", path="out.txt", content=ENV_TOKEN)
    script = write_script([reply, plan, leak, tool_call("finish", summary=f"wrote {ENV_TOKEN}")])
    seen: list[ev.Event] = []
    transcript = Transcript(tmp_path / "t.jsonl")
    spec = SessionSpec(
        ScriptedClient(script), ToolEnv(root), transcript=transcript, sink=seen.append, repo_map=False
    )
    agent = new_agent(spec, "look at the build log")
    assert agent.run().status == "finished"
    tool_texts = [m["content"] for m in agent.context.turns if m["role"] == "tool"]
    assert "1| npm login with [secret:NPM_TOKEN]" in tool_texts  # what the model was shown
    assert ENV_TOKEN not in repr(seen)  # replies, tool calls' arguments and results, the end
    assert any(isinstance(e, ev.AssistantMessage) and e.content == "I see [secret:NPM_TOKEN]" for e in seen)
    assert ENV_TOKEN not in (tmp_path / "t.jsonl").read_text()
    assert (root / "out.txt").read_text() == ENV_TOKEN  # redaction is of what is shown, not of the work


def test_the_commit_gate_reads_new_binary_and_deleted_files_and_writes_nothing(make_repo):
    root = make_repo()
    (root / "blob.bin").write_bytes(b"\x00\xff" + ENV_TOKEN.encode() + b"\x00")  # git calls it binary
    (root / "stats.py").unlink()
    index = (root / ".git" / "index").read_bytes()
    objects = set((root / ".git" / "objects").rglob("*"))
    secrets = KnownSecrets.of([("GITHUB_TOKEN", ENV_TOKEN)])
    with pytest.raises(Refused, match=r"GITHUB_TOKEN in the diff of blob\.bin\)"):
        check_commit(secrets, root, ["blob.bin", "stats.py"], "a plain message")
    assert "stats.py" in per_file(commit_diff(root, ["blob.bin", "stats.py"]))["the diff of stats.py"]
    assert (root / ".git" / "index").read_bytes() == index  # a temporary index did the work
    stored = set((root / ".git" / "objects").rglob("*")) - objects
    added = {path.parent.name + path.name for path in stored if path.is_file()}
    assert added <= {"e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"}  # at most the empty blob (intent-to-add)
    check_commit(secrets, root, ["stats.py"], "a plain message")  # a clean change passes
