"""Requests to prompts: a conversation rendered with the checkpoint's template, or raw text.

``chat_prompt`` restores the replies the model wrote (``TurnMemory.restore``), renders the
conversation with the chat template and encodes it, each remembered reply as the ids the
model sampled for it (``TurnMemory.encode``), so the new prompt extends the last token for
token. ``text_prompt`` takes a raw completion prompt (text or ids). The ``Prompt`` says how
its reply is parsed (``generation.py``).

``tool_choice``:
- ``auto``: tools rendered, call blocks parsed as the model writes them, also when there are
  no tools (the agent's client; the server sends ``none`` for a request without tools).
- ``none``: rendered without tools and no call blocks are parsed (call markup the model
  writes anyway stays content); reasoning is still split off.
- ``required`` and a named function: enforced by prefill. The family's call opener (with the
  function's name when one is named) is appended to the prompt, so the reply starts inside a
  call block and the model can only fill in the rest. A model that still writes no valid block
  (it never closes it, or writes garbage) gets its text back as content; there is no retry.

With each of these (and ``response_format``, a JSON schema the reply must satisfy) the prompt
carries the reply's grammar (``grammar/tools_grammar.py``): free text or well-formed calls whose
arguments fit the tools' schemas, starting where the prompt ends (after a forced opener). The
runtime compiles it and the engine decodes under it, so a malformed call cannot be sampled.
``tool_choice: none`` and a request without tools have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codeagent.backend.chat.families import get_family
from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.toolcalls import opens_reasoning
from codeagent.backend.grammar.tools_grammar import reply_grammar

# The family's markup that opens a call block, then the part naming the function.
FORCED_CALL = {
    "qwen3": ("<tool_call>\n<function=", "{name}>\n"),
    "deepseek_v4": ('<｜DSML｜tool_calls>\n<｜DSML｜invoke name="', '{name}">\n'),
}


@dataclass(slots=True)
class Prompt:
    ids: list[int]
    text: str = ""
    forced: str = ""  # call markup appended to the prompt: the reply begins with it
    tools: list[dict[str, Any]] | None = None  # what the parser types arguments with
    parse: str = "none"  # "calls": reasoning and call blocks, "reasoning": reasoning only, "none": raw text
    chat: bool = False  # a rendered conversation: its finished turn is remembered for the next
    grammar: str | None = None  # what the reply must match (llguidance Lark); None: free
    format_grammar: bool = False  # the grammar is a response format (not compiling it is an error)


def chat_prompt(
    model: ChatModel,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tool_choice: str = "auto",
    function: str | None = None,
    options: dict[str, Any] | None = None,
    response_format: dict[str, Any] | None = None,
    parallel_calls: bool = True,
) -> Prompt:
    """``tool_choice`` is "auto", "none", "required" or "function" (then ``function`` names it);
    ``options`` reach the template (``enable_thinking``); ``response_format`` is a JSON schema
    the reply must satisfy (then the reply is not parsed for calls); without ``parallel_calls`` the
    grammar allows one call at most."""
    messages = model.memory.restore(messages)  # replies we generated get their exact text back
    options = options or {}
    if tool_choice == "none" or response_format is not None:
        spans = model.template.spans(messages, None if tool_choice == "none" else tools, **options)
        text = "".join(spans)
        grammar = _grammar(model, text, None, "none", None, response_format)
        ids = model.memory.encode(spans)
        return Prompt(
            ids, text, parse="reasoning", chat=True, grammar=grammar, format_grammar=grammar is not None
        )
    spans = model.template.spans(messages, tools, **options)
    text = "".join(spans)
    forced = _forced_call(model, text, function) if tool_choice in ("required", "function") else ""
    spans[-1] += forced
    grammar = _grammar(model, text + forced, tools, tool_choice, function, parallel=parallel_calls)
    return Prompt(model.memory.encode(spans), text + forced, forced, tools, "calls", True, grammar)


def _grammar(
    model: ChatModel,
    text: str,
    tools: list[dict[str, Any]] | None,
    tool_choice: str,
    function: str | None,
    response_format: dict[str, Any] | None = None,
    parallel: bool = True,
) -> str | None:
    family = get_family(model.family)
    return reply_grammar(
        model.family,
        tools,
        tool_choice,
        function,
        response_format,
        opens_reasoning(text, family),
        model.tokenizer.single_added_token,
        parallel,
    )


def _forced_call(model: ChatModel, text: str, function: str | None) -> str:
    family = get_family(model.family)
    opener, named = FORCED_CALL[model.family]
    close_reasoning = family.think_close + "\n\n" if opens_reasoning(text, family) else ""
    return close_reasoning + opener + (named.format(name=function) if function else "")


def text_prompt(model: ChatModel, prompt: str | list[int]) -> Prompt:
    if isinstance(prompt, str):
        return Prompt(model.tokenizer.encode(prompt), prompt)
    return Prompt(list(prompt))
