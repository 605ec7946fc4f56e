"""The runtime's factory: device and dtype choices, what a checkpoint needs, one runtime end to end."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.chat.prompt import chat_prompt
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError
from codeagent.backend.runtime import RuntimeConfig, load, open_runtime, pick_device, pick_dtype


def test_device_and_dtype_defaults():
    assert pick_device("cpu") == "cpu"
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_dtype(None, "cpu") == "bfloat16" and pick_dtype(None, torch.device("cuda")) == "bfloat16"
    assert pick_dtype("float32", "cpu") == "float32"  # still there for a CPU run that wants it
    assert pick_dtype("float16", "cpu") == "float16"
    with pytest.raises(LoadError, match="unknown dtype"):
        pick_dtype("int8", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(LoadError, match="no CUDA device"):
            pick_device("cuda")


def test_a_checkpoint_without_a_tokenizer_cannot_chat(qwen3_moe_dir):
    with pytest.raises(LoadError, match=r"no tokenizer\.json"):
        open_runtime(qwen3_moe_dir, RuntimeConfig(device="cpu"))
    loaded = load(qwen3_moe_dir, device="cpu")  # token ids need no tokenizer
    assert loaded.dtype == "bfloat16" and loaded.checkpoint.architecture == "Qwen3MoeForCausalLM"


def test_one_runtime_generates_and_remembers_the_turn(tiny_chat_model):
    config = RuntimeConfig(device="cpu", cache=CacheConfig(num_blocks=64), name="tiny", remembered_turns=4)
    runtime = open_runtime(tiny_chat_model, config)
    try:
        assert runtime.model.name == "tiny" and runtime.model.context_window == 32768
        messages = [{"role": "user", "content": "Fix the mean."}]
        prompt = chat_prompt(runtime.model, messages, [])
        generation = runtime.generate(prompt, SamplingParams(temperature=0.0, max_tokens=6))
        text = "".join(piece.content for piece in generation)
        assert generation.done and generation.finish_reason in ("stop", "length")
        assert generation.prompt_tokens == len(prompt.ids) and 1 <= generation.completion_tokens <= 6
        assert text == generation.message().content
        follow_up = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": "Why?"}]
        ids = chat_prompt(runtime.model, follow_up, []).ids
        assert ids[: len(prompt.ids) + len(generation.result.token_ids)] == [
            *prompt.ids,
            *generation.result.token_ids,
        ]  # the reply sent back as parsed extends the prompt token for token
    finally:
        runtime.close()
        runtime.close()  # idempotent
