"""Tiny random checkpoints built with transformers (the reference, a test dependency only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def qwen3_moe_reference(**overrides):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    settings = dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=8,
        num_experts_per_tok=2,
        initializer_range=0.1,
        mlp_only_layers=[1],
        norm_topk_prob=True,
        max_position_embeddings=2048,
        eos_token_id=None,
        bos_token_id=None,
        pad_token_id=None,
    )
    settings.update(overrides)
    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(Qwen3MoeConfig(**settings)).eval()


@pytest.fixture(scope="session")
def qwen3_moe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qwen3moe")
    qwen3_moe_reference().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def reference_greedy():
    return _reference_greedy


def _reference_greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """The reference's full forward recomputed at every step (no cache): the model's definition."""
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(new_tokens):
            ids = torch.tensor([sequence])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
            sequence.append(int(logits.argmax()))
    return sequence[len(prompt) :]
