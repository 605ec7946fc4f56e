"""Qwen3-Next and Qwen3.5-MoE against transformers, token for token; the gated delta rule's forms
against each other.

The oracle is the reference's full forward (no cache). Tiny random models with both layer
types, routed experts plus a shared expert and (Qwen3-Next) a dense layer are built with
transformers (``conftest.qwen3_next_reference`` / ``qwen3_5_reference``) and saved with
``save_pretrained``; their zero-centred norm weights, decays and
gated-norm weights are perturbed so that the (1 + w) convention, A_log / dt_bias and the
output norm all matter, and the decays are kept mild so the recurrent state remembers across
chunk boundaries.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from codeagent.backend.kernels.dispatch import REFERENCE
from codeagent.backend.layers.gated_delta import (
    causal_conv1d,
    causal_conv1d_step,
    chunk_gated_delta_rule,
    gated_delta_step,
    recurrent_gated_delta_rule,
)
from codeagent.backend.loader import LoadError, load_model
from codeagent.backend.models.base import SeqSlice

VOCAB = 512  # conftest.QWEN3_NEXT_SHAPES' vocabulary


Tiny = namedtuple("Tiny", "folder reference")


@pytest.fixture(scope="module")
def next_tiny(tmp_path_factory, qwen3_next_factory) -> Tiny:
    folder = tmp_path_factory.mktemp("qwen3next")
    reference = qwen3_next_factory()
    reference.save_pretrained(folder)
    return Tiny(folder, reference)


@pytest.fixture(scope="module")
def q35_tiny(tmp_path_factory, qwen3_5_factory) -> Tiny:
    folder = tmp_path_factory.mktemp("qwen3_5moe")
    reference = qwen3_5_factory()
    reference.save_pretrained(folder)
    return Tiny(folder, reference)


@pytest.fixture(params=["qwen3_next", "qwen3_5_moe"])
def tiny(request) -> Tiny:
    return request.getfixturevalue("next_tiny" if request.param == "qwen3_next" else "q35_tiny")


def prompt(length: int, seed: int = 2) -> list[int]:
    return torch.randint(0, VOCAB, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def reference_logits(reference, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        tensor = torch.tensor([ids])
        return reference(input_ids=tensor, attention_mask=torch.ones_like(tensor)).logits[0]


def reference_greedy(reference, ids: list[int], new_tokens: int) -> list[int]:
    sequence = list(ids)
    for _ in range(new_tokens):
        sequence.append(int(reference_logits(reference, sequence)[-1].argmax()))
    return sequence[len(ids) :]


def step(model, states: list, chunks: list[list[int]]) -> torch.Tensor:
    """One forward over several sequences' new tokens -> logits [len(chunks), vocab]."""
    ids = torch.tensor([t for chunk in chunks for t in chunk])
    positions = torch.cat([torch.arange(len(c)) + s.length for s, c in zip(states, chunks, strict=True)])
    return model(ids, positions, [SeqSlice(s, len(c)) for s, c in zip(states, chunks, strict=True)])


def greedy(model, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """All prompts prefilled in one forward, then one forward per decode step for all of them."""
    states = [model.new_state() for _ in prompts]
    out = [[int(row.argmax())] for row in step(model, states, prompts)]
    for _ in range(new_tokens - 1):
        logits = step(model, states, [[tokens[-1]] for tokens in out])
        for tokens, row in zip(out, logits, strict=True):
            tokens.append(int(row.argmax()))
    return out


# -- the gated delta rule and the convolution ------------------------------------------------------


def rule_inputs(length: int, heads: int = 3, dk: int = 8, dv: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(length, heads, dk, generator=generator), dim=-1) * dk**-0.5
    k = F.normalize(torch.randn(length, heads, dk, generator=generator), dim=-1)
    v = torch.randn(length, heads, dv, generator=generator)
    g = -torch.rand(length, heads, generator=generator) * 0.2
    beta = torch.rand(length, heads, generator=generator)
    state = torch.randn(heads, dk, dv, generator=generator)
    return q, k, v, g, beta, state


@pytest.mark.parametrize("length", [1, 5, 16, 17, 64, 65, 130, 203])
@pytest.mark.parametrize("chunk", [16, 64])
def test_chunked_rule_equals_the_recurrent_rule(length, chunk):
    q, k, v, g, beta, state = rule_inputs(length)
    before = state.clone()
    out, final = chunk_gated_delta_rule(q, k, v, g, beta, state, chunk=chunk)
    want, want_final = recurrent_gated_delta_rule(q, k, v, g, beta, state)
    assert torch.equal(state, before)  # the given state is left as it was
    assert torch.allclose(out, want, atol=1e-5) and torch.allclose(final, want_final, atol=1e-5)


def test_a_sequence_in_pieces_continues_its_state():
    q, k, v, g, beta, state = rule_inputs(150, seed=3)
    whole, final = chunk_gated_delta_rule(q, k, v, g, beta, state, chunk=32)
    outs, s = [], state
    for start, end in ((0, 7), (7, 40), (40, 41), (41, 150)):
        out, s = chunk_gated_delta_rule(
            q[start:end], k[start:end], v[start:end], g[start:end], beta[start:end], s, 32
        )
        outs.append(out)
    assert torch.allclose(torch.cat(outs), whole, atol=1e-5) and torch.allclose(s, final, atol=1e-5)


def test_decode_step_is_the_recurrence_for_each_sequence():
    inputs = [rule_inputs(5, seed=seed) for seed in range(4)]
    states = torch.stack([i[5] for i in inputs])  # [B, H, Dk, Dv]
    wants = [recurrent_gated_delta_rule(*i) for i in inputs]
    for t in range(5):
        q, k, v, g, beta = (torch.stack([i[n][t] for i in inputs]) for n in range(5))
        out = gated_delta_step(q, k, v, g, beta, states)
        assert torch.allclose(out, torch.stack([w[0][t] for w in wants]), atol=1e-6)
    assert torch.allclose(states, torch.stack([w[1] for w in wants]), atol=1e-6)


def test_value_outputs_keep_their_dtype_and_states_stay_float32():
    q, k, v, g, beta, state = rule_inputs(20)
    out, final = chunk_gated_delta_rule(q, k, v.bfloat16(), g, beta, state)
    assert out.dtype == torch.bfloat16 and final.dtype == torch.float32


def test_causal_conv1d_whole_pieces_and_steps_agree():
    generator = torch.Generator().manual_seed(4)
    x, weight = torch.randn(23, 10, generator=generator), torch.randn(10, 4, generator=generator)
    padded = F.pad(x.t(), (3, 0))[None]  # zeros before the first token
    want = F.silu(F.conv1d(padded, weight[:, None, :], groups=10)[0]).t()
    fresh = torch.zeros(10, 3)
    whole, state = causal_conv1d(x, weight, fresh)
    assert torch.allclose(whole, want, atol=1e-6) and torch.equal(state, x[-3:].t())
    first, mid = causal_conv1d(x[:2], weight, fresh)  # fewer tokens than the kernel's reach
    rest, after = causal_conv1d(x[2:9], weight, mid)
    states = after[None].clone()
    steps = [causal_conv1d_step(x[t : t + 1], weight, states)[0] for t in range(9, 23)]
    assert torch.allclose(torch.cat([first, rest, torch.stack(steps)]), want, atol=1e-6)
    assert torch.equal(states[0], state)


# -- the models against transformers ------------------------------------------------------------------


def ours(tiny: Tiny, dtype=torch.float32):
    return load_model(tiny.folder, dtype=dtype).model


def test_the_layers_are_what_the_configs_say(next_tiny, q35_tiny):
    from codeagent.backend.models.qwen3_next.moe import DenseMlp, SparseMoe

    mixers = [type(layer.mixer).__name__ for layer in ours(next_tiny).layers]
    assert mixers == ["GatedDeltaNet", "GatedAttention", "GatedDeltaNet", "GatedAttention"]
    assert [type(layer.mlp) for layer in ours(next_tiny).layers] == [
        SparseMoe,
        SparseMoe,
        DenseMlp,
        SparseMoe,
    ]
    assert all(isinstance(layer.mlp, SparseMoe) for layer in ours(q35_tiny).layers)


def test_prefill_logits_match_the_reference(tiny):
    ids, model = prompt(90), ours(tiny)
    full = reference_logits(tiny.reference, ids)
    for end in (1, 3, 4, 17, 64, 65, 90):  # around the conv's reach and the 64-token chunks
        mine = step(model, [model.new_state()], [ids[:end]])[0]
        assert torch.allclose(mine, full[end - 1], atol=1e-4), end


def test_decode_and_chunked_prefill_equal_prefill_at_every_position(tiny):
    ids, model = prompt(140, seed=3), ours(tiny)
    one_by_one, chunked = model.new_state(), model.new_state()
    stepped = [step(model, [one_by_one], [[t]])[0] for t in ids]
    start = 0
    for size in (1, 6, 13, 4, 70, 16, 30):  # chunk ends at 1, 7, 20, 24, 94, 110, 140
        logits = step(model, [chunked], [ids[start : start + size]])[0]
        start += size
        assert torch.allclose(logits, stepped[start - 1], atol=1e-5), start
        whole = step(model, [model.new_state()], [ids[:start]])[0]
        assert torch.allclose(whole, stepped[start - 1], atol=1e-5), start


def test_a_mixed_length_batch_matches_each_alone(tiny):
    model = ours(tiny)
    prompts = [prompt(5, 3), prompt(24, 4), prompt(70, 5)]
    alone = [greedy(model, [p], 12)[0] for p in prompts]
    assert greedy(model, prompts, 12) == alone
    # a late joiner prefills in the same forward as the others' decode steps
    states = [model.new_state() for _ in range(3)]
    first = step(model, states[:2], prompts[:2])
    tokens = [[int(first[0].argmax())], [int(first[1].argmax())], []]
    logits = step(model, states, [[tokens[0][-1]], [tokens[1][-1]], prompts[2]])
    for row, out in zip(logits, tokens, strict=True):
        out.append(int(row.argmax()))
    for _ in range(10):
        logits = step(model, states, [[t[-1]] for t in tokens])
        for row, out in zip(logits, tokens, strict=True):
            out.append(int(row.argmax()))
    assert tokens == [alone[0][:12], alone[1][:12], alone[2][:11]]


@pytest.mark.parametrize("length", [24, 150])
def test_greedy_matches_the_reference_and_its_generate(tiny, length):
    ids = prompt(length, seed=length)
    mine = greedy(ours(tiny), [ids], 16)[0]
    assert mine == reference_greedy(tiny.reference, ids, 16)
    tensor = torch.tensor([ids])
    with torch.no_grad():
        generated = tiny.reference.generate(
            tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=16, do_sample=False
        )
    assert mine == generated[0, length:].tolist()


def test_bfloat16_errs_as_much_as_the_reference_in_bfloat16(tiny):
    """bf16 rounding flips near-tied expert choices of a random tiny model, so its greedy tokens
    leave float32's within a few tokens and a single position's error is chaotic. What is
    checked is where our model rounds: with the torch references (the native kernels sum a
    token's experts in another order, which alone moves these logits), its error against the
    float32 reference, averaged over 60 positions, prefill and decode, is within 1.5 times
    transformers' own bf16 forward's."""
    ids = prompt(60, seed=9)
    full = reference_logits(tiny.reference, ids)
    theirs = reference_logits(copy.deepcopy(tiny.reference).to(torch.bfloat16), ids).float()
    model = ours(tiny, torch.bfloat16)
    model.kernels = REFERENCE
    state = model.new_state()
    decoded = torch.stack([step(model, [state], [[t]])[0] for t in ids])
    prefilled = torch.stack([step(model, [model.new_state()], [ids[:end]])[0] for end in range(1, 61)])
    bound = 1.5 * (theirs - full).abs().amax(-1).mean()
    assert (decoded - full).abs().amax(-1).mean() <= bound
    assert (prefilled - full).abs().amax(-1).mean() <= bound


def test_a_qwen3_5_release_layout_loads_its_text_model(q35_tiny, tmp_path):
    """The ForConditionalGeneration spelling: config under text_config, keys under
    model.language_model., a vision tower and an MTP head beside them (skipped)."""
    config = json.loads((q35_tiny.folder / "config.json").read_text())
    release = {
        "architectures": ["Qwen3_5MoeForConditionalGeneration"],
        "model_type": "qwen3_5_moe",
        "text_config": {k: v for k, v in config.items() if k != "architectures"},
        "vision_config": {"depth": 1},
    }
    (tmp_path / "config.json").write_text(json.dumps(release))
    tensors = load_file(q35_tiny.folder / "model.safetensors")
    renamed = {k.replace("model.", "model.language_model.", 1): v for k, v in tensors.items()}
    renamed |= {
        "model.visual.blocks.0.attn.qkv.weight": torch.zeros(3, 3),
        "mtp.fc.weight": torch.zeros(2, 2),
    }
    save_file(renamed, tmp_path / "model.safetensors")
    ids = prompt(30, seed=6)
    mine = step(model := load_model(tmp_path).model, [model.new_state()], [ids])[0]
    assert torch.allclose(mine, reference_logits(q35_tiny.reference, ids)[-1], atol=1e-4)


def test_wrong_and_unknown_weights_are_named(next_tiny, tmp_path):
    tensors = load_file(next_tiny.folder / "model.safetensors")
    shutil.copy(next_tiny.folder / "config.json", tmp_path / "config.json")
    key = "model.layers.0.linear_attn.in_proj_qkvz.weight"
    save_file(dict(tensors, **{key: tensors[key][:-8]}), tmp_path / "model.safetensors")
    with pytest.raises(LoadError, match=r"in_proj_qkvz.*checkpoint shape"):
        load_model(tmp_path)
    save_file(
        dict(tensors, **{"model.layers.0.linear_attn.extra": torch.zeros(1)}), tmp_path / "model.safetensors"
    )
    with pytest.raises(LoadError, match=r"unexpected weight.*linear_attn\.extra"):
        load_model(tmp_path)
    del tensors["model.layers.1.self_attn.q_norm.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(LoadError, match=r"missing weights.*layers\.1\.mixer\.q_norm"):
        load_model(tmp_path)


def test_configs_refuse_what_is_not_supported(next_tiny):
    from codeagent.backend.models.qwen3_next.config import Qwen3NextConfig

    raw = json.loads((next_tiny.folder / "config.json").read_text())
    assert Qwen3NextConfig.from_dict(raw).rotary_dim == 8
    default = {k: v for k, v in raw.items() if k != "layer_types"}
    assert Qwen3NextConfig.from_dict(default).layer_types[3] == "full_attention"  # every 4th
    for change, needle in (
        ({"layer_types": ["linear_attention"] * 4}, "full_attention"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope_type"),
        ({"hidden_act": "gelu"}, "silu"),
        ({"intermediate_size": None}, "dense"),
    ):
        with pytest.raises(ValueError, match=needle):
            Qwen3NextConfig.from_dict(dict(raw, **change))


# -- through the engine and the command line ---------------------------------------------------------


def test_engine_batches_chunks_preempts_and_resumes_from_cached_blocks(next_tiny):
    from codeagent.backend.engine import CacheConfig, Engine, Request
    from codeagent.backend.layers.sampler import SamplingParams

    model = ours(next_tiny)
    model.state_every = 1  # the DeltaNet states saved in every block (test_qwen3_next_prefix: fewer)
    prompts = [prompt(n, seed=s) for s, n in ((8, 20), (9, 75), (10, 26))]
    alone = [greedy(model, [p], 12)[0] for p in prompts]
    params = SamplingParams(max_tokens=12)
    engine = Engine(model, set(), cache=CacheConfig(block_size=8, num_blocks=13), max_batch_tokens=32)
    results = engine.generate([Request(p, params) for p in prompts])
    assert engine.stats.preemptions > 0
    assert [r.token_ids for r in results] == alone
    # a follow-up sharing a whole conversation resumes from its cached blocks' saved states
    assert engine.generate([Request(prompts[0], params)])[0].token_ids == alone[0]  # cached again
    follow_up = prompts[0] + alone[0] + prompt(9, seed=11)
    again = engine.generate([Request(follow_up, params)])[0]
    assert again.cached_tokens == (20 + 12 - 1) // 8 * 8
    assert again.token_ids == reference_greedy(next_tiny.reference, follow_up, 12)


def test_standalone_states_refuse_a_cached_prefix(next_tiny):
    with pytest.raises(ValueError, match="cannot resume"):
        ours(next_tiny).new_state(None, 8)


def test_generate_command_matches_the_reference(next_tiny):
    ids = [3, 17, 99, 250, 7, 64, 1, 300]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeagent.tui.cli",
            "generate",
            "--model",
            str(next_tiny.folder),
            "--prompt-ids",
            ",".join(map(str, ids)),
            "--max-tokens",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["architecture"] == "Qwen3NextForCausalLM"
    assert report["token_ids"] == reference_greedy(next_tiny.reference, ids, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_engine_decodes_through_the_native_recurrent_kernels(next_tiny, dtype):
    from codeagent.backend.engine import Engine, Request
    from codeagent.backend.kernels import dispatch, native
    from codeagent.backend.layers.sampler import SamplingParams

    model = ours(next_tiny, dtype)
    prompts = [prompt(9, seed=3), prompt(23, seed=4)]
    params = SamplingParams(max_tokens=8)

    def run(mode: str) -> list[list[int]]:
        model.kernels = dispatch.choose("cpu", mode)
        if mode == "native" and model.kernels.recurrent is None:
            pytest.skip(f"native recurrent kernels unavailable: {model.kernels}")
        engine = Engine(model, set())
        return [r.token_ids for r in engine.generate([Request(p, params) for p in prompts])]

    before = dict(native.calls)
    got = run("native")
    if dtype == torch.float32:  # bf16: the native MoE sums in another order (one ulp, a chaotic tiny model)
        assert got == run("torch")
    for kernel in ("conv", "conv_step"):
        assert native.calls[kernel] > before.get(kernel, 0), kernel
    # the step takes one activation dtype: a bf16 model's q and k leave the L2 norm in float32
    # beside bf16 values, so there the reference runs it (mixed dtypes: not yet in the kernel)
    stepped = native.calls["gated_delta_step"] > before.get("gated_delta_step", 0)
    assert stepped == (dtype == torch.float32)
