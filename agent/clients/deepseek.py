"""DeepSeek's chat-completions API (``--model deepseek:NAME``, key ``DEEPSEEK_API_KEY``).

The wire format is OpenAI's (``remote.py``); what differs is reasoning. In thinking mode
DeepSeek returns ``reasoning_content`` beside the answer, and its guide splits the
conversation into turns at user messages: in a turn where the model called tools, every
assistant message's ``reasoning_content`` goes back to the API, in that turn and in every
later request (without it the API answers 400); in a turn without tool calls, reasoning is
left out (the API ignores it there, and the legacy ``deepseek-reasoner`` refused it). An
assistant message in a tool-calling turn that has no reasoning (written by another model
before a switch) is sent with an empty one, since the API checks that the field is there.
Cache hits come as ``prompt_cache_hit_tokens``, which ``remote._usage`` reads.
"""

from __future__ import annotations

from codeagent.agent.clients.remote import RemoteClient
from codeagent.agent.protocol import Message

HINTS = {
    401: "check the API key (DEEPSEEK_API_KEY)",
    402: "the DeepSeek account has no balance left",
    404: "check the model name (deepseek-chat, deepseek-reasoner)",
}


class DeepSeekClient(RemoteClient):
    kind = "deepseek"
    hints = HINTS

    def wire_messages(self, messages: list[Message]) -> list[Message]:
        wire = super().wire_messages(messages)
        for turn in _turns(wire):
            assistants = [m for m in turn if m.get("role") == "assistant"]
            called = any(m.get("tool_calls") for m in assistants)
            for message in assistants:
                if called:
                    message["reasoning_content"] = message.get("reasoning_content") or ""
                else:
                    message.pop("reasoning_content", None)
        return wire


def _turns(messages: list[Message]) -> list[list[Message]]:
    """The messages cut before each user message: a turn is a user message and its answers."""
    turns: list[list[Message]] = [[]]
    for message in messages:
        if message.get("role") == "user" and turns[-1]:
            turns.append([])
        turns[-1].append(message)
    return turns
