"""Qwen3-Next's prefix caching across its DeltaNet states: a sequence resumed from cached blocks
(memory, or the disk tier in a new engine) computes what a cold run computes.

The cold run is the same model without any cached prefix, in the engine's pool (its prompt
cut at the same block boundaries) and standalone (not cut: the family's 1e-5). Tiny random
float32 model (transformers' Qwen3-Next with both layer kinds), blocks of 8 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from codeagent.backend.cache.allocator import BlockAllocator, CacheConfig
from codeagent.backend.cache.paged import KVStream, SeqBlocks
from codeagent.backend.engine import Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import load_model
from codeagent.backend.models.base import SeqSlice
from codeagent.backend.models.qwen3_next.snapshots import state_bytes, state_streams
from codeagent.backend.runner import forward_batch

BS = 8
VOCAB = 512


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """test_qwen3_next's tiny model: both layer kinds, experts and a dense layer, mild decays."""
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    torch.manual_seed(0)
    reference = Qwen3NextForCausalLM(
        Qwen3NextConfig(
            vocab_size=VOCAB,
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
            intermediate_size=96,
            mlp_only_layers=[2],
            initializer_range=0.1,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        )
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if name.endswith("A_log"):  # decays of 0.01..0.2 a token: the state remembers across blocks
                parameter.copy_(torch.empty(parameter.shape).uniform_(0.01, 0.2, generator=generator).log())
            elif name.endswith(("norm.weight", "dt_bias")):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    folder = tmp_path_factory.mktemp("qwen3next_prefix")
    reference.save_pretrained(folder)
    return load_model(folder, dtype=torch.float32).model


def prompt(length: int, seed: int) -> list[int]:
    return torch.randint(0, VOCAB, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@dataclass
class Seq:  # what the allocator works on (CachedSequence)
    tokens: list[int]
    table: list[int] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    computed: int = 0


def allocator(model, **cache) -> BlockAllocator:
    config = CacheConfig(block_size=BS, num_blocks=64, **cache)
    return BlockAllocator(
        model.cache_streams(BS), config, BS, torch.device("cpu"), b"t", "", model.resumes_from_blocks
    )


def run(
    model, alloc: BlockAllocator, tokens: list[int], chunk: int = 1000, decode: int = 3
) -> tuple[Seq, list]:
    """Admit ``tokens``, compute the rest in forwards of ``chunk`` tokens, then ``decode`` greedy
    steps; returns the sequence (registered, released with persistence) and the last logits of
    the prompt and of every decode step."""
    seq = Seq(list(tokens))
    assert alloc.allocate(seq) is not None
    state = model.new_state(SeqBlocks(alloc.pool, seq.table), seq.computed)
    logits = []
    while True:
        n = min(chunk, len(seq.tokens) - seq.computed)
        out = forward_batch(
            model,
            alloc.pool,
            torch.device("cpu"),
            [(state, seq.tokens[seq.computed :][:n], seq.computed, seq.table)],
        )
        seq.computed += n
        alloc.register(seq)
        if seq.computed < len(seq.tokens):
            continue
        logits.append(out[0])
        if len(logits) > decode:
            break
        seq.tokens.append(int(out[0].argmax()))
        assert alloc.may_append(seq)
    alloc.free(seq, persist=True)
    return seq, logits


def cold(model, tokens: list[int], decode: int = 3) -> list:
    return run(model, allocator(model, prefix_caching=False), tokens, decode=decode)[1]


def standalone(model, tokens: list[int], decode: int = 3) -> list:
    state, out, ids = model.new_state(), [], list(tokens)
    new = ids
    for _ in range(decode + 1):
        positions = torch.arange(state.length, state.length + len(new))
        row = model(torch.tensor(new), positions, [SeqSlice(state, len(new))])[0]
        out.append(row)
        new = [int(row.argmax())]
    return out


def close(a: list, b: list, tol: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=tol)
        assert int(x.argmax()) == int(y.argmax())


def test_a_follow_up_turn_resumes_from_memory_as_a_cold_run(model):
    alloc = allocator(model)
    turn1 = prompt(29, 1)
    first, _ = run(model, alloc, turn1, chunk=11)  # chunked prefill: boundaries inside and between chunks
    follow = first.tokens + prompt(13, 2)
    seq, resumed = run(model, alloc, follow)
    hit = (len(first.tokens)) // BS * BS  # every full block of turn 1 and its reply
    assert hit == 32
    assert seq.hashes[: hit // BS] == first.hashes[: hit // BS]  # the same chain
    reference = cold(model, follow)
    close(resumed, reference, 1e-5)
    close(resumed, standalone(model, follow), 1e-5)


def test_admission_reports_only_whole_cached_blocks_and_resumes_there(model):
    alloc = allocator(model)
    base = prompt(40, 3)
    run(model, alloc, base, decode=0)
    # a prefix diverging mid-block (token 21, inside block 2): blocks 0 and 1 hit
    follow = base[:21] + prompt(10, 4)
    seq = Seq(list(follow))
    admission = alloc.allocate(seq)
    assert admission is not None and admission.cached == 16
    alloc.free(seq, persist=False)
    _, resumed = run(model, alloc, follow)
    close(resumed, cold(model, follow), 1e-5)
    # the whole prompt cached: its last token is still computed, from the block before it
    _, again = run(model, alloc, base, decode=1)
    close(again, cold(model, base, decode=1), 1e-5)


def test_the_engine_resumes_from_memory_and_in_a_mixed_batch(model):
    params = SamplingParams(max_tokens=6)
    engine = Engine(model, set(), cache=CacheConfig(block_size=BS, num_blocks=64), max_batch_tokens=24)
    turn1 = prompt(27, 5)
    reply = engine.generate([Request(turn1, params)])[0].token_ids
    follow, other = turn1 + reply + prompt(7, 6), prompt(30, 7)
    before = engine.stats.prefill_tokens
    results = engine.generate([Request(follow, params), Request(other, params)])
    assert results[0].cached_tokens == (len(turn1) + len(reply) - 1) // BS * BS == 32
    assert results[1].cached_tokens == 0
    assert engine.stats.prefill_tokens - before == len(follow) - 32 + len(other)
    for ids, result in zip((follow, other), results, strict=True):
        expected = [int(row.argmax()) for row in cold(model, ids, decode=5)]
        assert result.token_ids == expected


def test_a_new_engine_resumes_from_the_disk_tier(model, tmp_path):
    params = SamplingParams(max_tokens=5)
    cache = CacheConfig(block_size=BS, num_blocks=64, disk_folder=tmp_path)
    first = Engine(model, set(), cache=cache, namespace=b"q3n")
    turn1 = prompt(34, 8)
    reply = first.generate([Request(turn1, params)])[0].token_ids
    first.flush()
    first.close()
    files = sorted(tmp_path.rglob("*.kv"))
    assert len(files) == (34 + 5 - 1) // BS
    assert all(f.stat().st_size > first.block_bytes for f in files)  # KV and states, plus a header

    follow = turn1 + reply + prompt(9, 9)
    reopened = Engine(model, set(), cache=cache, namespace=b"q3n")
    result = reopened.generate([Request(follow, params)])[0]
    assert result.disk_tokens == result.cached_tokens == 32
    assert result.token_ids == [int(row.argmax()) for row in cold(model, follow, decode=4)]
    # the same through the allocator, logits: disk -> a fresh allocator -> resumed
    alloc = allocator(model, disk_folder=tmp_path / "alloc")
    run(model, alloc, turn1 + reply, decode=0)
    alloc.flush()
    fresh = allocator(model, disk_folder=tmp_path / "alloc")
    _, resumed = run(model, fresh, follow)
    assert fresh.disk is not None and fresh.disk.hits == 4
    close(resumed, cold(model, follow), 1e-5)
    reopened.close()
    alloc.close()
    fresh.close()


def test_cache_bytes_per_block_boundary(model):
    c = model.config
    streams = model.cache_streams(BS)
    kv = [s for s in streams if s.name.endswith((".k", ".v"))]
    channels = 2 * 2 * 16 + 4 * 8  # q, k (2 key heads x 16) and v (4 value heads x 8)
    per_layer = channels * (4 - 1) * 4 + 4 * 16 * 8 * 4  # conv state + recurrent state, float32 model
    assert per_layer == 3200
    assert state_bytes(streams) == 2 * per_layer == 6400  # two DeltaNet layers: one boundary
    assert KVStream.row_bytes(kv[0]) == c.num_key_value_heads * c.head_dim * 4
    engine = Engine(model, set(), cache=CacheConfig(block_size=BS, num_blocks=4))
    assert engine.block_bytes == 4 * BS * 2 * 16 * 4 + 6400  # 2 attention layers' K and V rows + the states
    engine.close()
    # Qwen3-Next-80B-A3B: 36 DeltaNet layers, 16 key / 32 value heads of 128, conv kernel 4, bf16
    big = state_streams(list(range(36)), 2 * 16 * 128 + 32 * 128, 4, 32, 128, 128, torch.bfloat16, 32)
    assert state_bytes(big) == 36 * (8192 * 3 * 2 + 32 * 128 * 128 * 4) == 77_266_944  # 73.7 MiB
    # without saved states: KV rows only, and no resumption
    from codeagent.backend.models.qwen3_next.model import Qwen3NextForCausalLM

    bare = Qwen3NextForCausalLM(c, prefix_states=False)
    assert state_bytes(bare.cache_streams(BS)) == 0 and not bare.resumes_from_blocks
    with pytest.raises(ValueError, match="cannot resume"):
        model.new_state(None, BS)
