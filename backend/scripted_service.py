"""The scripted model for ``codeagent serve --model scripted:FILE``: replies from a JSONL file.

A real engine service (``submit(prompt_ids, params)`` -> a token stream, as ``generation.py``
asks of ``EngineService``) that answers request i with reply i of FILE, whatever the prompt
says, so a real client (Claude Code, Codex, an SDK) can be run against ``serve``
deterministically: the script's tool call reaches the client as the protocol's own
``tool_use`` / ``function_call``, the client runs it, and the next request gets the next reply.

FILE has one reply per non-blank line, a JSON object with any of:
- ``"text"``: the visible answer;
- ``"tool_call"``: ``{"name": NAME, "arguments": {...}}``, one call, after the text;
- ``"reasoning"``: thinking written before both;
and at least one of ``text`` and ``tool_call``. Each reply is written in the served chat
format's own markup (``<think>``, Qwen3-Coder's ``<tool_call><function=NAME><parameter=P>``,
string values verbatim, others as JSON) and goes through the normal decode and parse path,
so what a client receives is exactly what a model writing that text would give it.

The chat format needs no checkpoint: codeagent's built-in Qwen3 template (ChatML turns,
Qwen3-Coder's XML calls) and a byte tokenizer (one token per UTF-8 byte, plus ChatML's
special tokens), whose counts the usage reports. The served name defaults to FILE's stem.

Limits: replies are handed out in request order across all clients and protocols (a client
that makes extra requests, a title or a quota check, consumes replies too); once the script
is used up every further request fails with the protocol's error (a 500, or the stream's
error event), naming the script. Sampling parameters are ignored except ``max_tokens``, which
cuts a reply short (finish reason ``length``). Nothing is cached (``cached_tokens`` is 0).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.template import ChatTemplate
from codeagent.backend.chat.tokenizer import Tokenizer
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.sequence import Result

PREFIX = "scripted:"
FAMILY = "qwen3"
SPECIALS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
WINDOW = 1 << 20  # tokens: a byte tokenizer's prompts are long, and nothing here holds KV
KEYS = {"text", "tool_call", "reasoning"}


class ScriptError(ValueError):
    """FILE cannot be read or has a malformed line; the message names the place."""


@dataclass(frozen=True, slots=True)
class Reply:
    text: str = ""
    tool_call: dict[str, Any] | None = None  # {"name": str, "arguments": dict}
    reasoning: str = ""

    def markup(self) -> str:
        """The reply as a Qwen3-Coder model writes it."""
        thought = f"<think>\n{self.reasoning}\n</think>\n\n" if self.reasoning else ""
        if self.tool_call is None:
            return thought + self.text
        parameters = "".join(
            f"<parameter={name}>\n{value if isinstance(value, str) else json.dumps(value)}\n</parameter>\n"
            for name, value in self.tool_call["arguments"].items()
        )
        call = f"<tool_call>\n<function={self.tool_call['name']}>\n{parameters}</function>\n</tool_call>"
        return thought + (f"{self.text}\n\n" if self.text else "") + call


def read_script(path: Path) -> list[Reply]:
    """Every reply in ``path``; ``ScriptError`` for a missing file or the first bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise ScriptError(f"script {path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ScriptError(f"cannot read script {path}: {err}") from err
    replies = [_reply(f"{path}:{number}", line) for number, line in enumerate(lines, 1) if line.strip()]
    if not replies:
        raise ScriptError(f"script {path} has no replies")
    return replies


def _reply(where: str, line: str) -> Reply:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise ScriptError(f"{where}: not JSON: {err.msg}") from err
    if not isinstance(entry, dict) or not entry.keys() & {"text", "tool_call"}:
        raise ScriptError(f'{where}: expected an object with "text" and/or "tool_call"')
    if unknown := sorted(entry.keys() - KEYS):
        raise ScriptError(f"{where}: unknown keys {unknown}; expected {sorted(KEYS)}")
    for key in ("text", "reasoning"):
        if not isinstance(entry.get(key, ""), str):
            raise ScriptError(f'{where}: "{key}" must be a string')
    call = entry.get("tool_call")
    if call is not None and not (
        isinstance(call, dict)
        and isinstance(call.get("name"), str)
        and call["name"]
        and isinstance(call.get("arguments", {}), dict)
        and call.keys() <= {"name", "arguments"}
    ):
        raise ScriptError(f'{where}: "tool_call" must be {{"name": "...", "arguments": {{...}}}}')
    if call is not None:
        call = {"name": call["name"], "arguments": call.get("arguments", {})}
    return Reply(entry.get("text", ""), call, entry.get("reasoning", ""))


def byte_tokenizer() -> Tokenizer:
    """One token per UTF-8 byte (byte-level BPE with no merges) and ChatML's special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    inner = HFTokenizer(models.BPE({char: i for i, char in enumerate(alphabet)}, []))
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    inner.decoder = decoders.ByteLevel()
    inner.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIALS])
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    return Tokenizer(inner, config, {})


def scripted_chat_model(name: str) -> ChatModel:
    """The built-in Qwen3 chat format over the byte tokenizer."""
    tokenizer = byte_tokenizer()
    template = ChatTemplate.for_checkpoint({}, tokenizer.special_tokens, FAMILY)
    return ChatModel(name, tokenizer, template, FAMILY, WINDOW)


class ScriptedStream:
    """A reply's tokens, played back as the engine service's stream plays a sequence's."""

    def __init__(self, tokens: list[int], prompt_tokens: int, finish: str, error: str | None = None) -> None:
        self.tokens, self.prompt_tokens = tokens, prompt_tokens
        self.finish, self.error = finish, error
        self.cancelled = threading.Event()
        self.result: Result | None = None

    def __iter__(self) -> Iterator[int]:
        sent: list[int] = []
        try:
            for token in self.tokens:
                if self.cancelled.is_set():
                    return
                sent.append(token)
                yield token
        finally:
            finish = "cancelled" if self.cancelled.is_set() else self.finish
            self.result = Result(sent, finish, self.prompt_tokens, error=self.error)

    def cancel(self) -> None:
        self.cancelled.set()


class ScriptedService:
    """Answers the i-th request with ``replies[i]``; thread-safe."""

    def __init__(self, model: ChatModel, replies: list[Reply], source: str = "the script") -> None:
        self.model, self.replies, self.source = model, replies, source
        self.used = 0
        self._lock = threading.Lock()
        self.on_broken: Callable[[str], None] | None = None  # as ``EngineService``'s; never called

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> ScriptedStream:
        with self._lock:
            index, self.used = self.used, self.used + 1
        if index >= len(self.replies):
            why = f"{self.source} has no reply {index + 1}: it holds {len(self.replies)}"
            return ScriptedStream([], len(prompt_ids), "error", why)
        tokenizer = self.model.tokenizer
        tokens = [*tokenizer.encode(self.replies[index].markup()), *sorted(tokenizer.eos_token_ids)[:1]]
        finish = "length" if len(tokens) > params.max_tokens else "stop"
        return ScriptedStream(tokens[: params.max_tokens], len(prompt_ids), finish)

    def health(self) -> dict[str, int]:
        with self._lock:
            return {
                "replies_used": min(self.used, len(self.replies)),
                "replies_left": max(0, len(self.replies) - self.used),
            }

    def close(self) -> None:
        pass


@dataclass(slots=True)
class ScriptedRuntime:
    """What ``serve`` needs of a runtime, for a script: the chat model and its service."""

    model: ChatModel
    service: ScriptedService
    path: Path

    def close(self) -> None:
        self.service.close()


def open_scripted(path: Path, name: str | None = None) -> ScriptedRuntime:
    """The script at ``path`` served as ``name`` (default: the file's stem); ``ScriptError``."""
    replies = read_script(path)
    model = scripted_chat_model(name or path.stem)
    return ScriptedRuntime(model, ScriptedService(model, replies, f"script {path}"), path)
