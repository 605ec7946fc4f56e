"""The real Claude Code and Codex CLIs against ``codeagent serve``'s server, offline.

The CLIs are installed from npm once into the user's cache folder (``bench.agent_clients``);
without node, npm or a registry (mirror) the tests skip with the reason. Each CLI runs in a
temporary home and working directory, with a made-up key and only 127.0.0.1 to talk to.

The model is ``AgentScript``: a real implementation of the engine service protocol
(``submit(prompt_ids, params)`` -> a token stream) that reads the rendered prompt and answers
as an agent model would, in the template's own markup: a tool call when its tool is offered
and no tool result came since the last reply, else a text answer quoting the last tool
result. So a real client does a whole tool round trip on text a tiny random model would
never write, the answer proves the tool's result reached the model, and the prompts it was
given show each request extending the last token for token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.loader import read_config
from codeagent.backend.scripted_service import ScriptedStream
from codeagent.backend.serving.api_checks import ApiError
from codeagent.backend.serving.http_handler import Handler, Route
from codeagent.backend.serving.server import OpenAIServer, serve
from codeagent.bench.agent_clients import KEY, Claude, ClientsMissing, Codex, codex_model, install

WORD = "PLUM-7431"
THOUGHT = "The file will tell."
RESPONSE = re.compile(r"<tool_response>\n(.*?)\n</tool_response>", re.S)


class AgentScript:
    """Calls ``tool`` with ``arguments`` until a tool result comes back, then quotes it; every
    reply reasons first when ``thinking`` is given."""

    def __init__(self, model: ChatModel, tool: str, arguments: dict[str, str], thinking: str = "") -> None:
        self.model, self.tool, self.arguments = model, tool, arguments
        self.thinking = f"<think>\n{thinking}\n</think>\n\n" if thinking else ""  # before every reply
        self.turns: list[tuple[list[int], ScriptedStream]] = []  # each prompt and its reply's stream

    def reply(self, prompt: str) -> str:
        asked = prompt.rsplit("<|im_start|>assistant\n", 1)[0]  # without the generation prompt
        since_reply = asked.rsplit("<|im_start|>assistant\n", 1)[-1]
        results = RESPONSE.findall(since_reply)
        if results:
            return f"Done. The tool said: {results[-1][:300]}"
        if f"<function>\n<name>{self.tool}</name>" not in asked:
            return "A scripted answer without tools."
        parameters = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in self.arguments.items())
        return f"Let me look.\n<tool_call>\n<function={self.tool}>\n{parameters}</function>\n</tool_call>"

    def submit(self, prompt_ids: list[int], params: Any) -> ScriptedStream:
        text = self.thinking + self.reply(self.model.tokenizer.decode(prompt_ids))
        tokens = [*self.model.tokenizer.encode(text), *sorted(self.model.tokenizer.eos_token_ids)[:1]]
        stream = ScriptedStream(tokens[: params.max_tokens], len(prompt_ids), "stop")
        self.turns.append((list(prompt_ids), stream))
        return stream

    def first_differences(self) -> list[tuple[int, int]]:
        """Per request after the first: where its prompt leaves the last prompt and reply, and
        that length (equal where the prompt extends it token for token)."""
        out = []
        for (before, stream), (prompt, _) in zip(self.turns, self.turns[1:], strict=False):
            assert stream.result is not None
            written = before + stream.result.token_ids
            same = next((i for i, (a, b) in enumerate(zip(written, prompt, strict=False)) if a != b), None)
            out.append((min(len(written), len(prompt)) if same is None else same, len(written)))
        return out


class Seen:
    """The requests a server took, by endpoint, and the errors it answered."""

    def __init__(self, server: OpenAIServer) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, str]] = []
        server.routes = {path: self._wrap(path, route) for path, route in server.routes.items()}

    def _wrap(self, path: str, route: Route) -> Route:
        def endpoint(handler: Handler, body: dict[str, Any]) -> None:
            self.requests.append((path, body))
            try:
                route.endpoint(handler, body)
            except ApiError as err:
                self.errors.append((path, err.message))
                raise

        return Route(route.method, endpoint, route.dialect)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for at, body in self.requests if at == path]


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    """The CLIs in the user's cache folder: module fixtures run before the per-test home
    isolation (``tests/conftest.py``) moves ``$XDG_CACHE_HOME``, so runs share one install."""
    try:
        return install()
    except ClientsMissing as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def wide_model(tiny_chat_model: Path) -> ChatModel:
    """The tiny chat model's tokenizer and template with a window that holds a CLI's whole prompt."""
    config = {**read_config(tiny_chat_model), "max_position_embeddings": 1 << 20}
    return ChatModel.from_dir(tiny_chat_model, config, "tiny")


@pytest.fixture
def scripted_agent(wide_model: ChatModel) -> Iterator[Callable[..., tuple[OpenAIServer, Seen]]]:
    servers: list[OpenAIServer] = []

    def start(tool: str, arguments: dict[str, str], thinking: str = "") -> tuple[OpenAIServer, Seen]:
        script = AgentScript(wide_model, tool, arguments, thinking)
        server = OpenAIServer(("127.0.0.1", 0), wide_model, script, api_key=KEY)  # the clients send it
        seen = Seen(server)
        serve(server)
        servers.append(server)
        return server, seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text(f"The code word is {WORD}.\n")
    return work


def _tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def _extends_token_for_token(server: OpenAIServer, requests: int = 4) -> None:
    """Every prompt starts with the last prompt and its reply as generated, tool calls and the
    second process's resumed session included: the prefix cache would hold all of it."""
    script = server.service
    assert isinstance(script, AgentScript) and len(script.turns) >= requests
    assert all(at == length for at, length in script.first_differences())


def test_claude_code_reads_a_file_through_a_tool_round_trip_for_two_turns(bin_dir, scripted_agent, tmp_path):
    work = _workdir(tmp_path)
    server, seen = scripted_agent("Read", {"file_path": str(work / "notes.txt")}, THOUGHT)
    claude = Claude(bin_dir, tmp_path / "home", work, server.url.removesuffix("/v1"), "tiny")
    for prompt in ("What is the code word in notes.txt?", "Read it once more."):
        turn = claude.turn(prompt)
        assert turn.returncode == 0, turn.stdout + turn.stderr
        assert WORD in turn.answer, turn.stdout
    assert seen.errors == []
    asked = [body for body in seen.bodies("/v1/messages") if body.get("tools")]
    assert asked and all(body.get("stream") for body in asked)
    assert any(tool["name"] == "Read" for tool in asked[0]["tools"])
    answered = [body for body in asked if _tool_results(body)]
    assert len(answered) >= 2  # one round trip per turn
    assert len(answered[-1]["messages"]) > len(answered[0]["messages"])  # the second turn continues the first
    thinking = [b for m in answered[-1]["messages"] if m["role"] == "assistant" for b in m["content"]]
    assert {"type": "thinking", "thinking": THOUGHT, "signature": ""} in thinking  # reasoning goes back
    _extends_token_for_token(server)


def test_codex_runs_a_command_through_a_tool_round_trip_for_two_turns(bin_dir, scripted_agent, tmp_path):
    work = _workdir(tmp_path)
    server, seen = scripted_agent("exec_command", {"cmd": "cat notes.txt"}, THOUGHT)  # read-only sandbox
    codex = Codex(bin_dir, tmp_path / "home", work, server.url, "tiny")
    for prompt in ("What is the code word in notes.txt?", "Read it once more."):
        turn = codex.turn(prompt)
        assert turn.returncode == 0, turn.stderr
        assert WORD in turn.answer, turn.stderr
    assert seen.errors == []
    asked = seen.bodies("/v1/responses")
    assert asked and all(body.get("stream") for body in asked)
    assert any(tool["name"] == "exec_command" for tool in asked[0]["tools"] if tool["type"] == "function")
    outputs = [item for item in asked[-1]["input"] if item.get("type") == "function_call_output"]
    assert len(outputs) == 2 and all(WORD in item["output"] for item in outputs)  # the second turn goes on
    reasoning = [item for item in asked[-1]["input"] if item.get("type") == "reasoning"]
    assert reasoning and reasoning[0]["content"] == [{"type": "reasoning_text", "text": THOUGHT}]
    _extends_token_for_token(server)


def test_codex_applies_a_patch_through_its_freeform_apply_patch_tool(bin_dir, scripted_agent, tmp_path):
    work = _workdir(tmp_path)
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from a custom tool\n*** End Patch"
    server, seen = scripted_agent("apply_patch", {"input": patch})
    freeform = codex_model("tiny", apply_patch_tool_type="freeform")
    home = tmp_path / "home"  # the patch writes in the temporary working directory:
    codex = Codex(bin_dir, home, work, server.url, "tiny", model_info=freeform, sandbox="workspace-write")
    turn = codex.turn("Add hello.txt.")
    assert turn.returncode == 0, turn.stderr
    assert (work / "hello.txt").read_text() == "hello from a custom tool\n"
    assert seen.errors == []
    first, last = seen.bodies("/v1/responses")[0], seen.bodies("/v1/responses")[-1]
    assert {"type": "custom", "name": "apply_patch"}.items() <= next(
        tool for tool in first["tools"] if tool.get("name") == "apply_patch"
    ).items()
    call, output = (item for item in last["input"] if item.get("type", "").startswith("custom_tool_call"))
    assert call["input"] == patch and output["call_id"] == call["call_id"]
    _extends_token_for_token(server, requests=2)
