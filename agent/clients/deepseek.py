"""DeepSeek's chat-completions API (``--model deepseek:NAME``, key ``DEEPSEEK_API_KEY``).

The wire format is OpenAI's (``remote.py``); what differs is reasoning. In thinking mode
DeepSeek returns ``reasoning_content`` beside the answer, and wants it back only while the
turn that produced it is still going: an assistant message after the latest user message
that called tools carries its ``reasoning_content`` (the model continues that thought once
the tool results are in), while every earlier assistant message goes without it (older
reasoning is not part of the conversation the model expects, and ``deepseek-reasoner`` has
answered 400 when given it). Cache hits come as ``prompt_cache_hit_tokens``, which
``remote._usage`` reads.
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
        turn_starts = max((i for i, m in enumerate(wire) if m.get("role") == "user"), default=-1) + 1
        for index, message in enumerate(wire):
            if "reasoning_content" in message and not (index >= turn_starts and message.get("tool_calls")):
                del message["reasoning_content"]
        return wire
