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


SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def write_tokenizer(folder: Path, vocab_size: int = 512, chat_template: str | None = None) -> None:
    """A byte-level BPE trained here on a little English and code: no downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [
        "You are a careful software engineer. Read the file, fix the bug, run the tests.",
        "def mean(values):\n    return sum(values) / len(values)\n",
        '{"type": "function", "function": {"name": "read_file", "parameters": {"path": "a.py"}}}',
        "<tool_call>\n<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n</function>\n</tool_call>",
        "Les caractères accentués et les emojis 🙂 doivent survivre au découpage.",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "bos_token": None, "pad_token": "<|endoftext|>"}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(__import__("json").dumps(config))


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-MoE with a tokenizer and a long window: nonsense output, real machinery."""
    folder = tmp_path_factory.mktemp("qwen3chat")
    qwen3_moe_reference(max_position_embeddings=32768).save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def deepseek_v4_reference(**overrides):
    """A tiny V4 with every attention type, hash-routed layers and YaRN on compressed layers.

    Eight indexer heads keep exact-zero indexer scores (all heads' ReLUs clipped) rare, so
    torch.topk's arbitrary tie-breaking in the reference does not decide the comparison.
    """
    from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

    settings = dict(
        vocab_size=512,
        hidden_size=64,
        num_hidden_layers=5,
        num_attention_heads=4,
        head_dim=32,
        qk_rope_head_dim=8,
        q_lora_rank=32,
        o_groups=2,
        o_lora_rank=16,
        n_routed_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        index_n_heads=8,
        index_head_dim=16,
        index_topk=3,
        sliding_window=8,
        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
        layer_types=[
            "sliding_attention",
            "compressed_sparse_attention",
            "heavily_compressed_attention",
            "compressed_sparse_attention",
            "heavily_compressed_attention",
        ],
        mlp_layer_types=["hash_moe", "hash_moe", "moe", "moe", "moe"],
        initializer_range=0.1,
        max_position_embeddings=65536,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        rope_parameters={
            "main": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
            "compress": {
                "rope_type": "yarn",
                "rope_theta": 160000.0,
                "partial_rotary_factor": 0.25,
                "factor": 16.0,
                "original_max_position_embeddings": 4096,
                "beta_fast": 32,
                "beta_slow": 1,
            },
        },
    )
    settings.update(overrides)
    torch.manual_seed(0)
    model = DeepseekV4ForCausalLM(DeepseekV4Config(**settings)).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("tid2eid"):
                buffer.copy_(
                    torch.randint(0, settings["n_routed_experts"], buffer.shape, generator=generator)
                )
            elif name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
        for name, parameter in model.named_parameters():
            if name.endswith(("sinks", ".base", ".scale", "hc_base", "hc_scale", "position_bias")):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="session")
def deepseek_v4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dsv4")
    deepseek_v4_reference().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer_writer():
    return write_tokenizer
