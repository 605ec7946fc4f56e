"""The embedded runtime as a model client: the agent's ``ModelClient`` protocol, met by shape.

The model is opened by the runtime's factory (``runtime.py``: load -> chat model -> engine ->
service) and each ``complete`` is one ``Generation`` (``generation.py``), the same text path
the server runs: the OpenAI-shaped conversation rendered with the checkpoint's own chat
template and tokenized, generated, detokenized incrementally and fed through the family's
streaming tool-call parser, so visible text streams to ``on_token`` without call markup and
the reply comes back as an OpenAI assistant message. Token counts are exact (the model's
own tokenizer).

Follow-up turns cost only their new tokens: the engine (on a background ``EngineService``,
so parallel agents share its batches) caches every full block of prompt and reply by its
token hash chain, in memory and in a disk tier under ``$XDG_CACHE_HOME/codeagent/kv``. For
the hit to reach across turns the next prompt must extend this one token for token: the
reply goes back as the assistant message's ``_raw`` (rendered verbatim by the template),
and the token ids of recent turns are kept so re-tokenizing the conversation never
changes them (``chat/continuity.py``). ``usage.cached_tokens`` says how much of each prompt was reused.

Several agents may share one engine with their own sampling: ``sampled(temperature, seed)``
is a view of the same runtime that samples at that temperature, each reply with the next
seed of a generator seeded with ``seed`` (``fix --attempts N``: the attempts' shared prompt
is prefilled once by the engine, their decoding batched).

Every reply is decoded under the grammar of the offered tools (``backend/grammar``: free text
or well-formed calls whose arguments fit each tool's schema; ``RuntimeConfig.constrain``), with
``tool_choice`` ``auto``. Limits: no stop strings and no other ``tool_choice`` (the agent asks
for neither); a prompt that leaves no room in the context window is refused, not truncated.
"""

from __future__ import annotations

import atexit
import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.cache.disk import default_root as default_disk_root
from codeagent.backend.chat.prompt import chat_prompt
from codeagent.backend.chat.template import RAW
from codeagent.backend.generation import Generation
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.runtime import RuntimeConfig, open_runtime

RECENT_TURNS = 64  # turns whose token ids are kept for extension (parallel agents, sub-agents)


class EmbeddedClientError(Exception):
    """The model cannot answer this request (the wiring turns it into the agent's ModelError)."""


@dataclass(slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass(slots=True)
class Reply:
    """Shaped like the agent's ``Completion``: an OpenAI assistant message, usage, finish reason."""

    message: dict[str, Any]
    usage: TokenUsage
    finish_reason: str
    ttft_s: float = 0.0  # submission to first token: queueing plus the prefill of the uncached part
    decode_tokens_per_s: float = 0.0


class EmbeddedClient:
    def __init__(
        self,
        folder: Path,
        dtype: str | None = None,
        device: str | None = None,
        max_new_tokens: int = 4096,
        temperature: float = 0.0,
        cache: CacheConfig | None = None,
        tp: int = 1,
        ep: bool = False,
        cpu_experts: int = 0,
        pack: str | None = None,
    ) -> None:
        cache = cache if cache is not None else CacheConfig(disk_folder=default_disk_root())
        settings = RuntimeConfig(
            dtype, device, cache, f"embedded:{folder.name}", RECENT_TURNS, tp, ep, cpu_experts, pack
        )
        self.runtime = open_runtime(folder, settings)
        atexit.register(self.close)  # blocks queued for the disk tier reach it; threads end before exit
        self.model = self.runtime.model
        self.name = self.model.name
        self.engine = self.runtime.engine
        self.context_window = self.model.context_window
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seeds: random.Random | None = None  # a seed per reply, when sampled with one

    def sampled(self, temperature: float, seed: int | None) -> EmbeddedClient:
        """This client's runtime, sampling at ``temperature``; with ``seed``, reproducibly."""
        view = copy.copy(self)
        view.temperature = temperature
        view.seeds = None if seed is None else random.Random(seed)
        return view

    def close(self) -> None:
        self.runtime.close()

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        return chat_prompt(self.model, messages, tools).ids

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[int, bool]:
        return len(self.prompt_ids(messages, tools)), True

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        on_token: Callable[[str], None] | None = None,
    ) -> Reply:
        prompt = chat_prompt(self.model, messages, tools)
        room = self.context_window - len(prompt.ids)
        if room <= 0:
            raise EmbeddedClientError(
                f"the prompt has {len(prompt.ids)} tokens; the model's window is {self.context_window}"
            )
        seed = None if self.seeds is None else self.seeds.randrange(2**31)
        params = SamplingParams(
            temperature=self.temperature, max_tokens=min(self.max_new_tokens, room), seed=seed
        )
        try:
            generation = self.runtime.generate(prompt, params)
        except ValueError as err:
            raise EmbeddedClientError(str(err)) from err
        try:
            for piece in generation.pieces(every_token=True):
                if generation.done and generation.result.finish_reason == "error":
                    break  # a failed reply: what it held back is not shown
                if (
                    on_token
                ):  # every token, "" when it shows nothing: the caller may stop the reply at any token
                    on_token(piece.content)
        finally:
            generation.cancel()  # interrupted (Ctrl-C, an error in on_token): free the sequence
        if generation.result.finish_reason == "error":
            raise EmbeddedClientError(generation.result.error or "the engine failed")
        return _reply(generation)


def _reply(generation: Generation) -> Reply:
    parsed = generation.message()
    message: dict[str, Any] = {"role": "assistant", "content": parsed.content, RAW: parsed.raw}
    if parsed.reasoning_content:
        message["reasoning_content"] = parsed.reasoning_content
    if parsed.tool_calls:
        message["tool_calls"] = parsed.tool_calls
    result, generated = generation.result, generation.completion_tokens
    rate = (generated - 1) / result.decode_s if generated > 1 and result.decode_s > 0 else 0.0
    usage = TokenUsage(generation.prompt_tokens, generated, result.cached_tokens)
    return Reply(message, usage, generation.finish_reason, result.prefill_s, rate)
