"""The terminal UI driven as a user would, through Textual's pilot: a real repository, the
scripted model, real tools (in the sandbox where bubblewrap works), real checkpoints."""

from __future__ import annotations

import time

import pytest

from codeagent.tui.app.entries import DiffEntry, FinalEntry, ToolEntry, UserEntry
from codeagent.tui.app.panels import ApprovalPanel, PlanPanel, StatusBar
from codeagent.tui.app.prompt import Completions, PromptInput

PLAN = [
    {"step": "find the bug in mean", "status": "in_progress"},
    {"step": "fix it", "status": "pending"},
]
pytestmark = pytest.mark.anyio

ORIGINAL = "def mean(values):\n    return sum(values) / (len(values) - 1)\n"
FIXED = "def mean(values):\n    return sum(values) / len(values)\n"


def heads(app) -> list[str]:
    return [str(entry.query_one(".head").content) for entry in app.query(ToolEntry)]


def asking(app) -> bool:
    return not app.query_one(ApprovalPanel).has_class("-idle")


async def test_a_task_shows_plan_tool_blocks_diff_and_summary(
    make_repo, fix_script, script_file, make_app, drive
):
    root = make_repo()
    app = make_app(root, script_file(fix_script), mode="full-auto")
    async with app.run_test(size=(120, 40)) as pilot:
        d = drive(pilot)
        await d.send("fix mean")
        await d.idle()
        assert (root / "stats.py").read_text() == FIXED
        plan = str(app.query_one(PlanPanel).content)
        assert "✓ find the bug in mean" in plan and "✓ fix and run tests" in plan
        shown = heads(app)
        assert shown[:2] == ["▸ update_plan 2 steps ✓", "▸ read_file stats.py ✓"]
        assert "▸ edit_file stats.py ✓" in shown and any(h.startswith("▸ run_tests ✓") for h in shown)
        diff = str(app.query_one(DiffEntry).content)
        assert "-    return sum(values) / (len(values) - 1)" in diff
        assert "+    return sum(values) / len(values)" in diff
        assert app.query_one(FinalEntry).source == "mean divided by n-1; it now divides by n."
        assert "step 6" in str(app.query_one(StatusBar).content)
        tests = next(e for e in app.query(ToolEntry) if e.tool == "run_tests")
        assert "2 passed" in str(tests.query_one(".body").content)
        tests.focus()
        await pilot.press("enter")
        assert tests.expanded


async def test_approve_deny_and_always(make_repo, script_file, make_app, drive, tool_call):
    root = make_repo()
    script = script_file(
        [
            tool_call("update_plan", items=PLAN),
            tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values) * 2"),
            tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)"),
            tool_call("write_file", path="NOTES.md", content="fixed\n"),
            tool_call("finish", summary="done"),
        ]
    )
    app = make_app(root, script, mode="ask")
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("fix mean")
        await d.settle(lambda: asking(app))
        shown = d.text("#approval")
        assert "Approve? edit stats.py" in shown and "+    return sum(values) / len(values) * 2" in shown
        assert heads(app)[-1] == "▸ edit_file stats.py waiting for approval"
        await pilot.press("n")
        await d.settle(lambda: asking(app) and "* 2" not in d.text("#approval"))
        assert (root / "stats.py").read_text() == ORIGINAL
        await pilot.press("a")
        await d.idle()
        assert (root / "stats.py").read_text() == FIXED
        assert (root / "NOTES.md").read_text() == "fixed\n"  # edits were allowed for the session
        assert heads(app)[1] == "▸ edit_file stats.py ✗ not run: the user denied edit_file"
        denied = [m for m in app.session.agent.context.turns if m["role"] == "tool"][1]
        assert denied["content"] == "not run: the user denied edit_file"


async def test_escape_stops_a_running_command_and_keeps_the_conversation(
    make_repo, script_file, make_app, drive, tool_call
):
    root = make_repo()
    script = script_file(
        [
            tool_call("update_plan", items=PLAN),
            tool_call("run", command="sleep 30"),
            tool_call("finish", summary="went on after the interrupt"),
        ]
    )
    app = make_app(root, script, mode="full-auto")
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("wait a while")
        await d.settle(lambda: any(e.tool == "run" for e in app.query(ToolEntry)))
        await pilot.pause(0.3)
        started = time.monotonic()
        await pilot.press("escape")
        await d.idle()
        assert time.monotonic() - started < 5
        assert "⏹ interrupted" in heads(app)[-1]
        assert "interrupted; the conversation is kept" in d.text()
        turns = app.session.agent.context.turns
        assert [m["role"] for m in turns[-3:]] == ["tool", "assistant", "tool"]
        await d.send("go on")
        await d.idle()
        assert app.query_one(FinalEntry).source == "went on after the interrupt"


async def test_escape_at_an_approval_denies_and_answers_the_other_calls(
    make_repo, script_file, make_app, drive, tool_call
):
    root = make_repo()
    edit = tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)")
    read = tool_call("read_file", "call_read", path="stats.py")
    both = {"content": "", "tool_calls": edit["tool_calls"] + read["tool_calls"]}
    app = make_app(root, script_file([tool_call("update_plan", items=PLAN), both]), mode="ask")
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("fix mean")
        await d.settle(lambda: asking(app))
        await pilot.press("escape")
        await d.idle()
        assert (root / "stats.py").read_text() == ORIGINAL
        tools = [m for m in app.session.agent.context.turns if m["role"] == "tool"]
        assert [m["content"] for m in tools[-2:]] == [
            "not run: the user denied edit_file",
            "not run: interrupted by the user",
        ]
        assert app.query_one(PromptInput).has_focus


async def test_undo_restores_the_file_and_diff_shows_the_session(
    make_repo, script_file, make_app, drive, tool_call
):
    root = make_repo()
    script = script_file(
        [
            tool_call("update_plan", items=PLAN),
            tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)"),
            tool_call("write_file", path="notes/todo.md", content="check medians\n"),
            tool_call("finish", summary="fixed"),
        ]
    )
    app = make_app(root, script)
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("/diff")
        assert "nothing changed yet" in d.text()
        await d.send("fix mean")
        await d.idle()
        await d.send("/diff")
        session = str(list(app.query(DiffEntry))[-1].content)
        assert "+++ b/stats.py" in session and "+++ b/notes/todo.md" in session
        await d.send("/undo")
        assert not (root / "notes").exists()
        assert (root / "stats.py").read_text() == FIXED
        await d.send("/undo")
        assert (root / "stats.py").read_text() == ORIGINAL
        assert "undone: stats.py restored" in d.text()
        await d.send("/diff")
        assert "no changes to the files this session" in d.text()
        assert app.session.notes[-1].startswith("(The user undid the last change")


async def test_resume_after_quitting(make_repo, script_file, make_app, drive, tool_call):
    root = make_repo()
    script = script_file(
        [
            tool_call("update_plan", items=PLAN),
            tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)"),
            tool_call("finish", summary="first answer"),
            tool_call("finish", summary="second answer"),
        ]
    )
    first = make_app(root, script)
    async with first.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("fix mean")
        await d.idle()
        await pilot.press("ctrl+c")
        assert first.is_running
        await pilot.press("ctrl+c")
    run_id = first.session.run_id
    assert first.return_value == 0 and run_id

    second = make_app(root, script, resume=run_id)
    async with second.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.idle()
        assert [str(e.content).splitlines()[0] for e in second.query(UserEntry)] == ["› fix mean"]
        assert "+    return sum(values) / len(values)" in str(second.query_one(DiffEntry).content)
        assert second.query_one(FinalEntry).source == "first answer"
        assert "✓ find the bug in mean" not in str(second.query_one(PlanPanel).content)
        assert f"resumed session {run_id}" in d.text()
        await d.send("and again")
        await d.idle()
        assert [e.source for e in second.query(FinalEntry)] == ["first answer", "second answer"]
        await d.send("/resume")
        assert run_id in d.text() and "fix mean" in d.text()


async def test_slash_commands(make_repo, script_file, make_app, drive):
    root = make_repo()
    app = make_app(root, script_file([]))
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("/help")
        assert "/undo" in d.text() and "Ctrl+J" in d.text()
        await d.send("/frobnicate")
        assert "unknown command /frobnicate" in d.text() and "/help" in d.text()
        await d.send("/mod")
        assert "did you mean /mode or /model" in d.text()
        await d.send("/mode full-auto")
        assert app.session.policy.mode == "full-auto"
        assert "full-auto" in str(app.query_one(StatusBar).content)
        await d.send("/mode sometimes")
        assert "unknown mode 'sometimes'" in d.text()
        await d.send("/usage")
        assert "0 model calls" in d.text()
        await d.send("/model")
        assert "model: scripted:script.jsonl" in d.text()
        await d.send("/plan")
        assert "no plan yet" in d.text()
        await d.send("/quit")
        await pilot.pause()
    assert app.return_value == 0


async def test_file_completion_and_attachment(make_repo, script_file, make_app, drive, tool_call):
    root = make_repo()
    app = make_app(root, script_file([tool_call("finish", summary="read it")]))
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        prompt = app.query_one(PromptInput)
        await pilot.press(*"why @sta")
        completions = app.query_one(Completions)
        assert completions.open and completions.chosen() == "stats.py"
        await pilot.press("tab")
        assert prompt.text == "why @stats.py " and not completions.open
        await pilot.press("ctrl+j", *"second line")
        assert prompt.text == "why @stats.py \nsecond line"
        await pilot.press("enter")
        await d.idle()
        assert "attached: stats.py" in str(app.query_one(UserEntry).content)
        task = app.session.agent.context.turns[0]["content"]
        assert "Attached files:" in task and "return sum(values) / (len(values) - 1)" in task
        await pilot.press("up")
        assert prompt.text == "why @stats.py \nsecond line"
        await pilot.press("down")
        assert prompt.text == ""


async def test_a_message_sent_while_the_agent_works_waits_its_turn(
    make_repo, script_file, make_app, drive, tool_call
):
    root = make_repo()
    script = script_file(
        [
            tool_call("update_plan", items=PLAN),
            tool_call("run", command="true"),
            tool_call("finish", summary="first"),
            tool_call("finish", summary="second"),
        ]
    )
    app = make_app(root, script, mode="ask")
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("one")
        await d.settle(lambda: asking(app))
        assert "Approve? run a command" in d.text("#approval") and "true" in d.text("#approval")
        app.query_one(PromptInput).focus()
        await d.send("two")
        assert "queued until the agent stops" in d.text()
        app.query_one(ApprovalPanel).focus()
        await pilot.press("y")
        await d.settle(lambda: len(app.query(FinalEntry)) == 2)
        await d.idle()
        assert [str(e.content) for e in app.query(UserEntry)] == ["› one", "› two"]


async def test_escape_stops_a_model_writing_a_tool_call_at_its_next_token(
    make_repo, script_file, make_app, drive, tool_call, steady_client
):
    class Thinking(steady_client):
        """A model writing a long tool call: tokens that show nothing, 10 ms apart."""

        def complete(self, messages, tools, on_token=None):
            for _ in range(1000):
                time.sleep(0.01)
                if on_token:
                    on_token("")
            return super().complete(messages, tools, on_token)

    app = make_app(make_repo(), script_file([tool_call("finish", summary="never")]))
    app.session.client = Thinking(app.session.client.path)
    async with app.run_test(size=(100, 30)) as pilot:
        d = drive(pilot)
        await d.send("think hard")
        await d.settle(lambda: app.chat.tokens > 5)
        assert "the model is writing" in d.text("#activity") and "tokens" in d.text("#activity")
        started = time.monotonic()
        await pilot.press("escape")
        await d.idle()
        assert time.monotonic() - started < 2
        assert "interrupted" in d.text() and not app.query(FinalEntry)
        assert [m["role"] for m in app.session.agent.context.turns] == ["user"]
