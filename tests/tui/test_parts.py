"""The UI's parts on their own: the status line, attachments, history, approval previews,
slash commands. (Saved sessions are listed in ``agent.runs``, running commands stopped in
``sandbox.supervisors``: their tests are in tests/agent/test_record.py and
tests/sandbox/test_process.py.)"""

from __future__ import annotations

import json

from codeagent.sandbox.policy import ApprovalRequest
from codeagent.tools.base import ToolEnv, ToolSettings
from codeagent.tui.app.attach import attach, candidates, fragment
from codeagent.tui.app.history import History
from codeagent.tui.app.preview import preview
from codeagent.tui.app.slash import needs_idle, unknown
from codeagent.tui.app.status import Stats, count, status_text


def test_counts_and_the_status_line_fit_every_width():
    assert [count(n) for n in (999, 1234, 12_345, 128_000, 2_500_000)] == [
        "999",
        "1.2k",
        "12k",
        "128k",
        "2.5M",
    ]
    stats = Stats("embedded:Qwen3-Coder-30B-A3B", 262_144, 30_000, True, 30_000, 29_000, 41.7, 12, 75, "ask")
    wide = status_text(stats, 200).plain
    assert wide == (
        "embedded:Qwen3-Coder-30B-A3B │ ctx 30k/262k 11% │ ask │ sandbox │ step 12 │ 1:15 │ cache 29k/30k │ 42 tok/s"
    )
    narrow = status_text(stats, 80).plain
    assert len(narrow) <= 80 and narrow.startswith("embedded:Qwen3-Coder-30B-A3B │ ctx 30k/262k 11% │ ask")
    assert "tok/s" not in narrow
    assert status_text(Stats("m", 1000, 10, False), 80).plain.startswith("m │ ctx ~10/1k 1%")
    fallback = Stats("m", 1000, 10, confinement="landlock+seccomp")
    assert "│ sandbox: landlock+seccomp │" in status_text(fallback, 200).plain


def test_mentions_complete_and_attach_text_files_only(make_repo):
    root = make_repo({"src/app.py": "x = 1\n", "README.md": "```\ncode\n```\n", "data.bin": "\0\1"})
    (root / "big.txt").write_text("a" * 200_000)
    files = ["README.md", "big.txt", "data.bin", "src/app.py"]
    assert fragment("look at @src/a") == "src/a" and fragment("mail me@host") is None
    assert candidates(files, "app") == ["src/app.py"] and candidates(files, "")[0] == "big.txt"
    done = attach("see @README.md, @big.txt @data.bin @../etc/passwd and user@example.com", root)
    assert done.files == ["README.md"]
    assert "````\n```\ncode\n```\n````" in done.message  # a longer fence than the file's own
    assert any("big.txt is over 100 kB" in p for p in done.problems)
    assert any("data.bin" in p and "binary" in p for p in done.problems)


def test_history_walks_back_and_returns_to_the_draft(tmp_path):
    history = History(tmp_path / "h.jsonl")
    history.add("first")
    history.add("second\nline")
    again = History(tmp_path / "h.jsonl")
    assert again.older("draft") == "second\nline" and again.older("") == "first" and again.older("") is None
    assert again.newer() == "second\nline" and again.newer() == "draft" and again.newer() is None
    assert [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()] == [
        "first",
        "second\nline",
    ]


def test_previews_show_what_would_change(make_repo):
    root = make_repo()
    env = ToolEnv(root, settings=ToolSettings(test_command="make check"))
    edit = preview(
        ApprovalRequest("edit_file", {"path": "stats.py", "old_text": "- 1", "new_text": "- 0"}, "edit"), env
    )
    assert (
        edit.is_diff
        and edit.title == "edit stats.py"
        and "+    return sum(values) / (len(values) - 0)" in edit.body
    )
    missing = preview(
        ApprovalRequest("edit_file", {"path": "stats.py", "old_text": "nope", "new_text": ""}, "edit"), env
    )
    assert missing.title.startswith("edit_file (it would fail: old_text was not found")
    new = preview(ApprovalRequest("write_file", {"path": "docs/a.md", "content": "hi\n"}, "edit"), env)
    assert new.title == "create docs/a.md" and "+hi" in new.body
    tests = preview(ApprovalRequest("run_tests", {"paths": ["test_stats.py"]}, "command"), env)
    assert tests.body == "make check test_stats.py" and not tests.is_diff
    assert preview(ApprovalRequest("run", {"command": "rm -rf build"}, "command"), env).body == "rm -rf build"
    assert (
        "outside the repository"
        in preview(ApprovalRequest("write_file", {"path": "/etc/x", "content": ""}, "edit"), env).title
    )


def test_commands_that_wait_and_unknown_ones():
    assert needs_idle("/undo") and needs_idle("/model remote:x") and not needs_idle("/model")
    assert not needs_idle("/mode ask") and not needs_idle("/help")
    assert unknown("udno") == "unknown command /udno (did you mean /undo?); /help lists them all"
    assert unknown("zzz") == "unknown command /zzz; /help lists them all"
