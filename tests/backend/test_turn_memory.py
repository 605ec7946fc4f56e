"""The turn memory pins how a request tokenizes (``chat/continuity.py``): an assistant message whose
exact text the model generated gets the ids it sampled, in any request that carries it and
whatever was generated since; everything else, and any reply not remembered, encodes as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.prompt import chat_prompt
from codeagent.backend.loader import read_config

REPLY = "def mean(values):\n    return sum(values) / len(values)"
START = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "Fix mean()."}]


def fresh(folder: Path, size: int = 4) -> ChatModel:
    return ChatModel.from_dir(folder, read_config(folder), "tiny", remembered_turns=size)


@pytest.fixture
def model(tiny_chat_model: Path) -> ChatModel:
    return fresh(tiny_chat_model)


def sampled_ids(model: ChatModel, text: str) -> list[int]:
    """Ids a model could sample for ``text`` that encoding the text would not give: one piece per
    character, then the end of the turn."""
    tokenizer = model.tokenizer
    ids = [token for character in text for token in tokenizer.encode(character)]
    assert tokenizer.decode(ids) == text and len(ids) > len(tokenizer.encode(text))
    return [*ids, tokenizer.token_to_id("<|im_end|>")]


def generated(model: ChatModel, text: str, ids: list[int]) -> None:
    """What ``Generation`` remembers of a finished reply."""
    model.memory.remember({"content": text, "tool_calls": []}, text, ids)


def follow_up(start: list[dict], text: str = REPLY) -> list[dict]:
    return [*start, {"role": "assistant", "content": text}, {"role": "user", "content": "And the median?"}]


def test_a_follow_up_extends_the_prompt_and_the_sampled_ids(model):
    prompt = chat_prompt(model, START, []).ids
    sampled = sampled_ids(model, REPLY)
    generated(model, REPLY, sampled)
    ids = chat_prompt(model, follow_up(START), []).ids
    assert ids[: len(prompt) + len(sampled)] == prompt + sampled  # the prefix cache hits all of it


def test_a_request_tokenizes_the_same_whatever_was_generated_since(model):
    generated(model, REPLY, sampled_ids(model, REPLY))
    before = chat_prompt(model, follow_up(START), []).ids
    generated(model, "return len(values)", sampled_ids(model, "return len(values)"))
    generated(model, REPLY, model.tokenizer.encode(REPLY))  # the same text with other ids: the first stay
    assert chat_prompt(model, follow_up(START), []).ids == before


def test_the_reply_text_gets_its_sampled_ids_in_any_conversation(model):
    sampled = sampled_ids(model, REPLY)
    generated(model, REPLY, sampled)
    other = [{"role": "system", "content": "Another system prompt."}, {"role": "user", "content": "Hi."}]
    ids = chat_prompt(model, follow_up(other), []).ids
    head = model.tokenizer.encode(model.template.render(other, []))
    assert ids[: len(head) + len(sampled)] == head + sampled


def test_a_reply_not_remembered_encodes_as_text_the_documented_trade_off(model, tiny_chat_model):
    generated(model, REPLY, sampled_ids(model, REPLY))
    remembered = chat_prompt(model, follow_up(START), [])
    restarted = chat_prompt(fresh(tiny_chat_model), follow_up(START), [])  # a new process: no memory
    assert restarted.text == remembered.text
    assert restarted.ids == model.tokenizer.encode(restarted.text)
    assert len(restarted.ids) < len(remembered.ids)  # same request, other ids: the cache hit stops there

    for n in range(4):  # the memory holds 4 replies: REPLY is forgotten, least recently used first
        generated(model, f"values_{n}", model.tokenizer.encode(f"values_{n}"))
    assert chat_prompt(model, follow_up(START), []).ids == restarted.ids
