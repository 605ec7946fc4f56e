"""The plan-act loop through real tools, a real repository and the scripted client."""

from __future__ import annotations

import json
from pathlib import Path

from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.loop import Limits
from codeagent.agent.protocol import Completion
from codeagent.agent.record import SessionRecord, load_run
from codeagent.agent.session import SessionSpec, new_agent
from codeagent.agent.transcript import Transcript, read_records
from codeagent.tools.base import ToolEnv


def run_script(root: Path, script: Path, limits: Limits | None = None, transcript: Transcript | None = None):
    env = ToolEnv(root)
    spec = SessionSpec(ScriptedClient(script), env, limits or Limits(), transcript, repo_map=False)
    agent = new_agent(spec, "fix mean")
    return agent, agent.run()


def tool_messages(agent) -> list[str]:
    return [m["content"] for m in agent.context.turns if m["role"] == "tool"]


def test_scripted_run_fixes_file_and_finishes(make_repo, write_script, fix_script):
    root = make_repo()
    agent, result = run_script(root, write_script(fix_script))
    assert result.status == "finished"
    assert result.summary == "mean divided by n-1; it now divides by n."
    assert result.steps == 6
    assert "return sum(values) / len(values)" in (root / "stats.py").read_text()
    assert agent.env.plan[-1]["status"] == "completed"
    assert any("2 passed" in text for text in tool_messages(agent))


def test_step_budget_stops_the_run(make_repo, write_script, tool_call):
    root = make_repo()
    script = write_script([tool_call("read_file", path="stats.py")] * 5)
    _, result = run_script(root, script, Limits(max_steps=2))
    assert result.status == "budget"
    assert result.steps == 2
    assert "step budget of 2" in result.message


def test_token_budget_stops_the_run(make_repo, write_script, tool_call):
    root = make_repo()
    script = write_script([tool_call("read_file", path="stats.py")] * 5)
    _, result = run_script(root, script, Limits(max_tokens=50))
    assert result.status == "budget"
    assert result.steps == 1
    assert "token budget" in result.message


def test_wall_time_budget_stops_the_run(make_repo, write_script, tool_call):
    root = make_repo()
    plan = tool_call("update_plan", items=[{"step": "wait", "status": "in_progress"}])
    script = write_script([plan, tool_call("run", command="sleep 0.5"), tool_call("run", command="true")])
    _, result = run_script(root, script, Limits(max_wall_s=0.3))
    assert result.status == "budget"
    assert result.steps == 2
    assert "time budget" in result.message


def test_malformed_calls_get_corrections_and_the_run_recovers(make_repo, write_script, tool_call):
    root = make_repo()

    def raw(name: str, arguments: str) -> dict:
        return {
            "content": "",
            "tool_calls": [
                {"id": "x", "type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        }

    script = write_script(
        [
            raw("delete_everything", "{}"),
            raw("read_file", "{not json"),
            raw("read_file", "[1, 2]"),
            raw("read_file", "{}"),
            {"content": "I think I am done."},
            tool_call("finish", summary="done"),
        ]
    )
    agent, result = run_script(root, script)
    assert result.status == "finished"
    messages = tool_messages(agent)
    assert "unknown tool 'delete_everything'" in messages[0] and "read_file" in messages[0]
    assert "not valid JSON" in messages[1]
    assert "must be a JSON object" in messages[2]
    assert "needs argument(s): path" in messages[3]
    corrections = [m["content"] for m in agent.context.turns if m["role"] == "user"][1:]
    assert corrections and "called no tool" in corrections[0]


def test_repeated_replies_without_tool_calls_end_with_format_status(make_repo, write_script):
    root = make_repo()
    _, result = run_script(root, write_script([{"content": "hello"}] * 4))
    assert result.status == "format"
    assert result.steps == 3


def test_script_running_out_is_an_error_status(make_repo, write_script, tool_call):
    root = make_repo()
    _, result = run_script(root, write_script([tool_call("read_file", path="stats.py")]))
    assert result.status == "error"
    assert result.steps == 2


def test_changes_are_refused_before_a_plan(make_repo, write_script, tool_call):
    root = make_repo()
    before = (root / "stats.py").read_text()
    script = write_script(
        [
            tool_call("write_file", path="stats.py", content="x = 1\n"),
            tool_call("finish", summary="gave up"),
        ]
    )
    agent, result = run_script(root, script)
    assert result.status == "finished"
    assert "update_plan" in tool_messages(agent)[0]
    assert (root / "stats.py").read_text() == before


class SmallWindow(ScriptedClient):
    """The scripted client with a 1,500-token window, so compaction triggers quickly."""

    context_window = 1500

    def complete(self, messages, tools, on_token=None) -> Completion:
        self.seen_tokens.append(self.count_tokens(messages, tools)[0])
        return super().complete(messages, tools, on_token)


def test_compaction_rewrites_turns_only_and_keeps_the_pinned_prefix(
    make_repo, write_script, tool_call, tmp_path
):
    root = make_repo({"big.py": "".join(f"value_{n} = {n}  # padding text\n" for n in range(300))})
    plan = tool_call("update_plan", items=[{"step": "read", "status": "in_progress"}])
    reads = [
        tool_call("read_file", call_id=f"r{n}", path="big.py", start_line=1 + 40 * n, end_line=40 + 40 * n)
        for n in range(6)
    ]
    script = write_script([plan, *reads, tool_call("finish", summary="read it all")])
    client = SmallWindow(script)
    client.seen_tokens = []
    transcript = Transcript(tmp_path / "t.jsonl")
    transcript.write("meta", **SessionRecord(run_id="test", root=root).meta())
    env = ToolEnv(root)
    agent = new_agent(SessionSpec(client, env, Limits(), transcript, repo_map=False), "read big.py")
    pinned = json.dumps(agent.context.pinned)
    agent.context.reply_reserve = 0
    result = agent.run()
    assert result.status == "finished"
    assert json.dumps(agent.context.pinned) == pinned
    summaries = [m for m in agent.context.turns if "compacted" in str(m.get("content"))]
    assert summaries, "no compaction happened"
    assert "read_file" in summaries[-1]["content"]
    assert agent.context.turns[0]["content"].startswith("read big.py")
    every_message = [r["message"] for r in read_records(tmp_path / "t.jsonl") if r["type"] == "message"]
    uncompacted = client.count_tokens(every_message, agent.context.tools)[0]
    assert max(client.seen_tokens) < uncompacted - 600  # compaction dropped at least two reads' worth
    state = load_run(tmp_path / "t.jsonl")
    assert state.messages[0] == agent.context.pinned[0]
    assert any("compacted" in str(m.get("content")) for m in state.messages)


def test_policy_modes_decide_before_tools_run(make_repo, write_script, tool_call):
    from codeagent.sandbox.policy import Policy

    plan = tool_call("update_plan", items=[{"step": "change", "status": "in_progress"}])
    edit = tool_call("edit_file", path="stats.py", old_text="(len(values) - 1)", new_text="len(values)")
    command = tool_call("run", command="touch ran.txt")
    asked = []

    def approver(request):
        asked.append((request.kind, request.command))
        return {"edit": "always", "command": "deny"}[request.kind]

    cases = [
        ("read-only", None, False, False, []),
        ("ask", None, False, False, []),  # nobody can approve: refused, fail safe
        ("ask", approver, True, False, [("edit", None), ("command", "touch ran.txt")]),
        ("auto-edit", approver, True, False, [("command", "touch ran.txt")]),
        ("full-auto", None, True, True, []),
    ]
    for mode, who, edited, ran, questions in cases:
        root = make_repo(name=f"repo-{mode}-{who is not None}")
        asked.clear()
        env = ToolEnv(root)
        script = write_script(
            [plan, edit, command, tool_call("finish", summary="x")], name=f"{mode}{who}.jsonl"
        )
        spec = SessionSpec(
            ScriptedClient(script), env, Limits(), None, repo_map=False, policy=Policy(mode, who)
        )
        agent = new_agent(spec, "change things")
        assert agent.run().status == "finished"
        assert ("return sum(values) / len(values)" in (root / "stats.py").read_text()) == edited, mode
        assert (root / "ran.txt").exists() == ran, mode
        assert asked == questions, mode
        if not edited:
            assert any("not run:" in m["content"] for m in agent.context.turns if m["role"] == "tool")


def test_raw_replies_and_each_calls_usage_are_kept_in_context_and_transcript(
    make_repo, write_script, fix_script, tmp_path
):
    root = make_repo()
    for number, reply in enumerate(fix_script):
        reply["_raw"] = f"<tool_call>reply {number}</tool_call>"
        reply["usage"] = {"cached_tokens": number}
    transcript = Transcript(tmp_path / "t.jsonl")
    transcript.write("meta", **SessionRecord(run_id="test", root=root).meta())
    agent, result = run_script(root, write_script(fix_script), transcript=transcript)
    assert result.status == "finished"
    replies = [m for m in agent.context.turns if m["role"] == "assistant"]
    assert [m["_raw"] for m in replies] == [f"<tool_call>reply {n}</tool_call>" for n in range(6)]
    assert [turn.cached_tokens for turn in result.turns] == list(
        range(6)
    ) and result.usage.cached_tokens == 15
    state = load_run(tmp_path / "t.jsonl")
    assert [m.get("_raw") for m in state.messages if m["role"] == "assistant"] == [m["_raw"] for m in replies]
    assert state.turns == result.turns
