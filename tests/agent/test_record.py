"""The typed run record: the ``meta`` lines every earlier version wrote still read back (a fix
run without ``kind``, a session, a fix run from before refs were recorded), a record
written now reads back as itself, and a repository's sessions are listed from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeagent.agent.issues import IssueSpec
from codeagent.agent.loop import Limits
from codeagent.agent.record import (
    EvalRecord,
    FixRecord,
    RunRecord,
    SessionRecord,
    load_run,
    parse_record,
)
from codeagent.agent.runs import sessions
from codeagent.agent.transcript import TRANSCRIPT

LIMITS = {"max_steps": 60, "max_tokens": 3000000, "max_wall_s": 3600.0, "max_format_errors": 3}
ISSUE = {
    "number": 7,
    "title": "mean() is off",
    "body": "mean([1, 2, 3]) gives 3",
    "source": "text",
    "url": "",
    "comments": [],
    "labels": [],
}
PREVIOUS_FIX = {  # as codeagent fix wrote it before the record was typed: no kind
    "type": "meta",
    "time": 1767225600.0,
    "run_id": "20260101-000000-abcdef",
    "root": "/work/repo",
    "model": "scripted:/tmp/script.jsonl",
    "branch": "codeagent/issue-7",
    "base_commit": "0" * 40,
    "original_branch": "main",
    "stash": None,
    "issue": ISSUE,
    "tests_before": {"detected": True, "exit_code": 1, "passed": 0, "failed": 2},
    "limits": LIMITS,
    "untracked_before": ["build/out.o"],
    "refs_before": {"refs/heads/main": "0" * 40},
}
PREVIOUS_SESSION = {
    "type": "meta",
    "time": 1767225600.0,
    "run_id": "20260101-000001-abcdef",
    "kind": "interactive",
    "root": "/work/repo",
    "model": "qwen3-coder-30b-a3b",
    "task": "fix the mean function",
    "base": "1" * 40,
    "limits": LIMITS,
}


def test_a_fix_run_recorded_without_a_kind_reads_as_one():
    record = parse_record(PREVIOUS_FIX)
    assert isinstance(record, FixRecord)
    assert record.root == Path("/work/repo") and record.branch == "codeagent/issue-7"
    assert record.issue == IssueSpec(7, "mean() is off", "mean([1, 2, 3]) gives 3")
    assert record.limits == Limits() and record.refs_before == {"refs/heads/main": "0" * 40}
    assert record.untracked_before == ["build/out.o"] and record.tests_before["failed"] == 2
    written = {k: v for k, v in PREVIOUS_FIX.items() if k not in ("type", "time")}
    assert record.meta() == {**written, "kind": "fix"}


def test_a_fix_run_from_before_refs_were_recorded_skips_that_check():
    older = {k: v for k, v in PREVIOUS_FIX.items() if k != "refs_before"}
    record = parse_record(older)
    assert isinstance(record, FixRecord) and record.refs_before is None


def test_a_session_reads_back_and_a_bare_one_takes_its_folders_name(tmp_path):
    record = parse_record(PREVIOUS_SESSION)
    assert record == SessionRecord(
        run_id="20260101-000001-abcdef",
        root=Path("/work/repo"),
        model="qwen3-coder-30b-a3b",
        task="fix the mean function",
        base="1" * 40,
    )
    folder = tmp_path / "20260101-000002-abcdef"
    folder.mkdir()
    bare = {"type": "meta", "kind": "interactive", "root": "/work/repo", "model": "m"}
    (folder / TRANSCRIPT).write_text(json.dumps(bare) + "\n")
    state = load_run(folder / TRANSCRIPT)
    assert state.record == SessionRecord(run_id=folder.name, root=Path("/work/repo"), model="m")


def test_records_written_now_read_back_as_themselves():
    records = [
        parse_record(PREVIOUS_FIX),
        parse_record(PREVIOUS_SESSION),
        EvalRecord(run_id="t-1", root=Path("/w"), instance_id="t-1", repo="o/n", base_commit="2" * 40),
        RunRecord(run_id="bench", root=Path("/w"), model="m", limits=Limits(max_steps=3)),
    ]
    for record in records:
        line = json.loads(json.dumps({"type": "meta", **record.meta()}))
        assert parse_record(line) == record


def test_what_cannot_be_read_says_so():
    with pytest.raises(ValueError, match="branch"):
        parse_record({"run_id": "x", "root": "/w", "base_commit": "0" * 40, "issue": ISSUE})
    with pytest.raises(ValueError, match="unknown kind of run 'chat'; kinds: fix, interactive, eval, run"):
        parse_record({"kind": "chat", "run_id": "x", "root": "/w"})


def test_sessions_are_listed_per_repository_newest_first(make_repo, isolated_home):
    root = make_repo()
    runs = isolated_home / "xdg_state_home" / "codeagent" / "runs"
    for run_id, where, kind in (
        ("20260101-000000-aaaaaa", root, "interactive"),
        ("20260102-000000-bbbbbb", root, "interactive"),
        ("20260103-000000-cccccc", root.parent, "interactive"),
        ("20260104-000000-dddddd", root, None),
    ):
        (runs / run_id).mkdir(parents=True)
        meta = {"type": "meta", "kind": kind, "root": str(where), "task": f"task {run_id[7]}", "model": "m"}
        (runs / run_id / TRANSCRIPT).write_text(json.dumps(meta) + "\n")
    assert [s.run_id for s in sessions(root)] == ["20260102-000000-bbbbbb", "20260101-000000-aaaaaa"]
