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


QWEN3_NEXT_SHAPES = dict(
    vocab_size=512,
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    linear_key_head_dim=16,
    linear_value_head_dim=8,
    linear_conv_kernel_dim=4,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
    shared_expert_intermediate_size=48,
    initializer_range=0.1,
    max_position_embeddings=4096,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)


QWEN3_NEXT_BLOCKS = dict(  # q, k, v, gate and up rows in whole 128-row blocks (FP8's scale blocks)
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=64,
    shared_expert_intermediate_size=128,
    intermediate_size=128,
)


def perturbed(model):
    """Random values where initialisation leaves constants (norms at 0 or 1, dt_bias at 1)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("A_log"):  # decays of 0.01..0.2 a token: memory across chunks
                parameter.copy_(torch.empty(parameter.shape).uniform_(0.01, 0.2, generator=generator).log())
            elif name.endswith(("norm.weight", "dt_bias")):
                parameter.add_(noise * 0.3)
    return model.eval()


def qwen3_next_reference(blocks: bool = False, **overrides):
    """transformers' tiny Qwen3-Next: both layer kinds (DeltaNet, gated attention), routed
    experts with a shared expert, one dense layer (2), perturbed norms and mild decays; with
    ``blocks``, at ``QWEN3_NEXT_BLOCKS``' shapes."""
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    settings = dict(QWEN3_NEXT_SHAPES, intermediate_size=96, mlp_only_layers=[2], norm_topk_prob=True)
    settings.update(QWEN3_NEXT_BLOCKS if blocks else {}, **overrides)
    torch.manual_seed(0)
    return perturbed(Qwen3NextForCausalLM(Qwen3NextConfig(**settings)))


def qwen3_5_reference(**overrides):
    """transformers' tiny Qwen3.5-MoE text model at the same shapes (every layer sparse)."""
    from transformers import Qwen3_5MoeForCausalLM, Qwen3_5MoeTextConfig

    torch.manual_seed(0)
    return perturbed(Qwen3_5MoeForCausalLM(Qwen3_5MoeTextConfig(**dict(QWEN3_NEXT_SHAPES, **overrides))))


def qwen3_next_fp8(source: Path) -> tuple[dict, dict]:
    """A saved Qwen3-Next's tensors in Qwen's FP8 release spelling: every 2-D projection and the
    LM head e4m3 with float32 128 x 128 block scales (``weight_scale_inv``), the rest as it was,
    an MTP head's tensors beside them; and the same values dequantized (float32)."""
    from safetensors.torch import load_file

    from codeagent.backend.quant import dequantize_fp8, quantize_fp8

    quantized, dequantized = {}, {}
    for key, value in load_file(source / "model.safetensors").items():
        if value.dim() == 2 and ("proj" in key or key == "lm_head.weight"):
            weight, scale = quantize_fp8(value)
            quantized[key], quantized[key.removesuffix("weight") + "weight_scale_inv"] = weight, scale.float()
            dequantized[key] = dequantize_fp8(weight, scale)
        else:
            quantized[key] = dequantized[key] = value
    quantized["mtp.fc.weight"], quantized["mtp.fc.weight_scale_inv"] = quantize_fp8(torch.ones(4, 4))
    return quantized, dequantized


@pytest.fixture(scope="session")
def qwen3_next_fp8_tensors():
    """``qwen3_next_fp8``: (quantized, dequantized) tensors of a saved tiny Qwen3-Next."""
    return qwen3_next_fp8


@pytest.fixture(scope="session")
def qwen3_next_factory():
    """``qwen3_next_reference``: the Qwen3-Next tests' tiny model, other shapes by override."""
    return qwen3_next_reference


@pytest.fixture(scope="session")
def qwen3_5_factory():
    return qwen3_5_reference


@pytest.fixture(scope="session")
def qwen3_moe_factory():
    """``qwen3_moe_reference`` for tests that need other shapes."""
    return qwen3_moe_reference


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


@pytest.fixture(scope="session")
def tokenizer_writer():
    return write_tokenizer


@pytest.fixture(scope="session")
def qwen3_reference(qwen3_moe_dir: Path):
    """transformers' Qwen3-MoE loaded from the tiny checkpoint (the oracle)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(qwen3_moe_dir, dtype=torch.float32).eval()


@pytest.fixture
def fp4_float_route(monkeypatch):
    """FP4 products on their float route rather than with int8 activations (the default where
    the CPU has AVX512-VNNI), in this process and the workers it starts: for the tests that hold
    packed FP4 models to their float references, or to exact agreement between two paths (a
    prefill recomputing what decode steps made, experts split between places), which the int8
    activations' rounding (decode-sized products only) would break. The int8 route's own tests:
    test_native_packed_int8.py."""
    from codeagent.backend.kernels import native_packed

    monkeypatch.setenv(native_packed.INT8_ENV, "off")
    native_packed.set_int8(False)
    yield
    native_packed.set_int8(None)
