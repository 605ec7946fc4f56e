"""Terminal escape injection (issue 14, class 5), tried as an attacker would.

The attacker writes the model's messages (prompt injection), so also every tool call, and the
repository's file names and contents. Each attack below goes in through the model's message
(Markdown, its character references included), its reasoning, its plan, tool output (a
command that prints escapes), a file name (a real file of a real repository: in a listing,
a diff, an approval, the ``@`` completions, ``/undo``) and a diff; into ``codeagent fix``
(stderr progress, stdout result, ``--json``, then ``codeagent undo``) and into the terminal
UI (live, then resumed from its transcript). What reaches the terminal must hold no raw
control character (``inert(text) == text``) and must show the attack as placeholders.
"""

from __future__ import annotations

import html
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import OptionList, Static, TextArea

from codeagent.evals.progress import Progress
from codeagent.evals.reports import TaskReport, write_json, write_report
from codeagent.tui.app.entries import DiffEntry, FinalEntry, ReasoningEntry, ToolEntry
from codeagent.tui.app.panels import ApprovalPanel, PlanPanel
from codeagent.tui.app.prompt import Completions, PromptInput
from codeagent.tui.cli import main
from codeagent.tui.eval_command import _inert_ids
from codeagent.tui.inert import inert

ATTACKS = {
    "OSC 52 sets the clipboard": "\x1b]52;c;cHduZWQ=\x07",
    "OSC 0 sets the window title": "\x1b]0;pwned\x1b\\",
    "cursor up and erase the line": "\x1b[1A\x1b[2K",
    "8-bit CSI": "\x9b1A\x9b2K",
    "bell": "\x07",
    "carriage return overwrites": "all good\rpwned",
    "bidi override and isolate": "\u202eevil\u202c \u2066iso\u2069 \u200fmark\u061c",
}
PAYLOAD = " ".join(ATTACKS.values())
SHOWN = [  # each attack, as it must appear
    "\\u001b]52;c;cHduZWQ=\\u0007",
    "\\u001b]0;pwned\\u001b\\",
    "\\u001b[1A\\u001b[2K",
    "\\u009b1A\\u009b2K",
    "all good\\u000dpwned",
    "\\u202eevil\\u202c",
]
MARKUP = "[@click=app.quit]quit[/] [link=https://evil.example]link[/link] [b]bold[/b]"
MESSAGE = f"{PAYLOAD} {MARKUP} &#x202e;reference &#13;cr\n\n```\n{PAYLOAD}\n```\n"
EVIL_NAME = "evil\x1b]0;pwned\x07\u202e\x9b2Kname.py"  # no CR: codeagent's git reads it as a newline
MARKUP_NAME = "[@click=app.quit]x[link=mailto:me]y.py"
PRINTF = r"printf '\033]52;c;cHduZWQ=\007\033]0;pwned\007\033[1A\033[2K\302\2331Aok\rEVIL\342\200\256\n'"

pytestmark = [pytest.mark.anyio, pytest.mark.attack("terminal")]  # counted in the battery's report


def raw_controls(text: str) -> list[str]:
    return sorted({f"U+{ord(char):04X}" for char in text if inert(char) != char})


def assert_inert(text: str, where: str) -> None:
    assert not raw_controls(text), f"{where}: raw control characters {raw_controls(text)} in {text!r}"


def script(tool_call: Any) -> list[dict[str, Any]]:
    plan = tool_call("update_plan", items=[{"step": PAYLOAD, "status": "in_progress"}])
    return [
        {**plan, "content": MESSAGE, "reasoning_content": PAYLOAD},
        tool_call("run", command=PRINTF),
        tool_call("list_files"),
        tool_call("edit_file", path=EVIL_NAME, old_text="x = 1", new_text=f"x = '{PAYLOAD}'"),
        tool_call("finish", summary=MESSAGE),
    ]


# the terminal UI


def widget_texts(app: Any) -> list[tuple[str, str]]:
    """What each widget gives Textual to draw, whether it is on screen or not."""
    found = []
    for widget in app.query("*"):
        if isinstance(widget, Static):
            found.append((type(widget).__name__, str(widget.visual)))
        elif isinstance(widget, OptionList):
            found += [(type(widget).__name__, str(option.prompt)) for option in widget.options]
        elif isinstance(widget, TextArea):
            found.append((type(widget).__name__, widget.text))
    return found


def drawn(app: Any, where: str) -> str:
    """Everything the app draws now, checked: the screen as exported and every widget's text."""
    screen = app.export_screenshot()
    assert_inert(screen, f"{where}: the screen")
    assert_inert(html.unescape(screen), f"{where}: the screen")
    texts = widget_texts(app)
    for name, text in texts:
        assert_inert(text, f"{where}: {name}")
    return "\n".join(text for _, text in texts)


def asking(app: Any) -> bool:
    return not app.query_one(ApprovalPanel).has_class("-idle")


async def test_the_terminal_ui_shows_every_attack_inert(make_repo, script_file, make_app, drive, tool_call):
    root = make_repo({EVIL_NAME: "x = 1\n", MARKUP_NAME: "y = 2\n"})
    app = make_app(root, script_file(script(tool_call)), mode="ask")
    async with app.run_test(size=(160, 150)) as pilot:
        d = drive(pilot)
        await d.send("fix it")
        await d.settle(lambda: asking(app))
        assert "printf" in drawn(app, "approving the command")
        await pilot.press("y")
        await d.settle(lambda: asking(app) and "edit" in str(app.query_one(".title", Static).visual))
        approval = drawn(app, "approving the edit")
        assert "Approve? edit evil\\u001b]0;pwned\\u0007\\u202e\\u009b2Kname.py" in approval
        await pilot.press("y")
        await d.idle()
        await pilot.press("ctrl+o")  # every tool's output open
        await pilot.pause()
        shown = drawn(app, "after the run")
        for piece in SHOWN:
            assert piece in shown
        assert "&#x202e;" not in shown and "\\u202ereference" in shown  # Markdown's own references
        assert "\\u000dcr" in shown
        assert MARKUP in shown and "[@click=app.quit]x[link=mailto:me]y.py" in shown  # text, not markup
        assert "ok\\u000dEVIL\\u202e" in str(app.query(ToolEntry)[1].query_one(".body", Static).visual)
        assert "\\u001b]52;c;" in str(app.query_one(PlanPanel).visual)
        assert app.query(ReasoningEntry) and app.query(FinalEntry) and app.query(DiffEntry)

        app.submit("/diff")
        await pilot.pause()
        drawn(app, "/diff")
        assert "+x = '\\u001b]52;c;cHduZWQ=\\u0007" in str(app.query(DiffEntry)[-1].visual)

        app.submit("/undo")
        await pilot.pause()
        assert "undone: " in drawn(app, "/undo")  # the name as git quotes it (C-style), or shown inert
        run_id = app.session.run_id

    resumed = make_app(root, script_file(script(tool_call), name="again.jsonl"), resume=run_id)
    async with resumed.run_test(size=(160, 150)) as pilot:
        d = drive(pilot)
        await d.settle(lambda: bool(resumed.query(FinalEntry)))
        await pilot.press("ctrl+o")
        await pilot.pause()
        shown = drawn(resumed, "the resumed session")
        for piece in SHOWN:
            assert piece in shown


async def test_the_prompt_and_its_completions_hold_no_controls(
    make_repo, script_file, make_app, drive, tmp_path
):
    root = make_repo({EVIL_NAME: "x = 1\n", MARKUP_NAME: "y = 2\n"})
    (tmp_path / "history.jsonl").write_text(json.dumps(PAYLOAD) + "\n")
    app = make_app(root, script_file([]))
    async with app.run_test(size=(120, 40)) as pilot:
        d = drive(pilot)
        prompt = app.query_one(PromptInput)
        await pilot.press("up")  # the history, as written by anyone who could write the file
        assert "\\u001b]52;c;" in prompt.text
        drawn(app, "recalled history")
        prompt.clear()
        prompt.post_message(events.Paste(PAYLOAD + "\r\nnext line"))  # what a terminal sends on paste
        await pilot.pause()
        assert prompt.text.endswith("\nnext line") and "\\u202eevil" in prompt.text
        drawn(app, "a paste")
        prompt.clear()
        prompt.insert("@")
        await d.settle(lambda: app.query_one(Completions).open)
        offered = drawn(app, "the completions")
        assert "[@click=app.quit]x[link=mailto:me]y.py" in offered
        assert "evil\\u001b]0;pwned\\u0007" in offered
        assert MARKUP_NAME in app.query_one(Completions).paths  # completed as it is, shown as text
        await pilot.press("tab")
        assert prompt.text == "@evil\\u001b]0;pwned\\u0007\\u202e\\u009b2Kname.py "  # the first, made inert
        drawn(app, "a completed path")


# codeagent fix, undo: the progress lines, the result, the JSON


def codeagent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "codeagent.tui.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, timeout=120, check=False)


def decoded(data: bytes, where: str) -> str:
    text = data.decode("utf-8")  # strict: no stray bytes either
    assert_inert(text, where)
    return text


def test_fix_prints_every_attack_inert(make_repo, write_script, tool_call):
    root = make_repo({EVIL_NAME: "x = 1\n", MARKUP_NAME: "y = 2\n"})
    model = f"--model=scripted:{write_script(script(tool_call))}"
    proc = codeagent("fix", "--task", PAYLOAD, model, "--verbose", "-C", str(root), cwd=root)
    progress = decoded(proc.stderr, "fix's progress lines")
    result = decoded(proc.stdout, "fix's result")
    assert proc.returncode == 0, progress
    for piece in SHOWN:
        assert piece in progress  # the model's message, the tool's output, the diff
    assert "ok\\u000dEVIL\\u202e" in progress and "evil\\u001b]0;pwned\\u0007" in progress
    assert "files: " in result  # the name as git quotes it (C-style), or shown inert

    listed = codeagent("undo", "--list", "-C", str(root), cwd=root)
    decoded(listed.stdout, "undo --list")
    undone = codeagent("undo", "-C", str(root), cwd=root)
    assert "restored the checkpoint" in decoded(undone.stdout, "undo")  # with the name git-quoted


def test_fix_json_is_inert_and_the_same_json(make_repo, write_script, tool_call):
    root = make_repo({EVIL_NAME: "x = 1\n", MARKUP_NAME: "y = 2\n"})
    model = f"--model=scripted:{write_script(script(tool_call))}"
    proc = codeagent("fix", "--task", PAYLOAD, model, "--json", "-q", "-C", str(root), cwd=root)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(decoded(proc.stdout, "fix --json"))
    assert data["summary"] == MESSAGE.strip()  # the value itself, escaped only on its way out
    assert raw_controls(json.dumps(data, ensure_ascii=False))  # json.dumps alone leaves C1 and bidi raw


def test_an_error_line_is_inert(make_repo, write_script, tmp_path):
    root = make_repo()
    model = f"--model=scripted:{write_script([])}"
    proc = codeagent("fix", model, "--issue-file", str(tmp_path / EVIL_NAME), "-C", str(root), cwd=root)
    error = decoded(proc.stderr, "the error line")
    assert proc.returncode == 2 and "evil\\u001b]0;pwned" in error and len(error.splitlines()) == 1


def test_a_bugs_traceback_is_inert(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # put back after the test
    assert main(["undo", "-C", str(tmp_path / "missing")]) == 2
    try:
        raise RuntimeError(f"git failed on {EVIL_NAME}")
    except RuntimeError as err:
        sys.excepthook(type(err), err, err.__traceback__)
    printed = capsys.readouterr().err
    assert_inert(printed, "a traceback")
    assert "RuntimeError: git failed on evil\\u001b]0;pwned" in printed


# codeagent eval: reports, comparisons and the progress line quote the dataset's task ids


EVIL_ID = "task\x1b]52;c;cHduZWQ=\x07\u202e\x9b2K"


def test_eval_compare_is_inert(tmp_path):
    for name, status in (("a", "unresolved"), ("b", "resolved")):
        write_json(tmp_path / name / "run.json", {"model": f"model {PAYLOAD}"})
        report = TaskReport(EVIL_ID, status, PAYLOAD, "m", resolved=status == "resolved")
        write_report(tmp_path / name, report)
    proc = codeagent("eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), cwd=tmp_path)
    shown = decoded(proc.stdout, "eval compare")
    assert proc.returncode == 0, proc.stderr
    assert "task\\u001b]52;c;cHduZWQ=\\u0007\\u202e\\u009b2K: unresolved -> resolved" in shown


def test_eval_progress_shows_task_ids_inert():
    stream = io.StringIO()
    progress = Progress(1, [], stream=stream)
    _inert_ids(progress)(TaskReport(EVIL_ID, "resolved", PAYLOAD, "m", resolved=True))
    assert_inert(stream.getvalue(), "the progress line")
    assert "task\\u001b]52;c;" in stream.getvalue()
