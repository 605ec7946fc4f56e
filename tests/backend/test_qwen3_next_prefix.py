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
from codeagent.backend.cache.paged import KVPool, SeqBlocks
from codeagent.backend.engine import Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import load_model
from codeagent.backend.models.base import SeqSlice
from codeagent.backend.models.qwen3_next.model import STATE_EVERY
from codeagent.backend.models.qwen3_next.snapshots import state_bytes, state_streams
from codeagent.backend.runner import forward_batch

BS = 8
VOCAB = 512


@pytest.fixture(scope="module")
def model(tmp_path_factory, qwen3_next_factory):
    """test_qwen3_next's tiny model (``conftest.qwen3_next_reference``): both layer kinds,
    experts and a dense layer, mild decays, so the state remembers across blocks."""
    folder = tmp_path_factory.mktemp("qwen3next_prefix")
    qwen3_next_factory().save_pretrained(folder)
    return load_model(folder, dtype=torch.float32).model


@pytest.fixture(params=[1, 3])
def every(request, model) -> int:
    """The states saved in every block, or in one block of 3 (resuming only at the end of those)."""
    model.state_every = request.param
    yield request.param
    model.state_every = STATE_EVERY


def saved(tokens: int, every: int) -> int:
    """The cached tokens an admission reports when ``tokens`` are cached: the last saved boundary."""
    return tokens // (every * BS) * every * BS


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
    model, alloc: BlockAllocator, tokens: list[int], chunk: int = 1000, decode: int = 3, before_free=None
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
    if before_free is not None:
        before_free(seq)
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


def admitted(alloc: BlockAllocator, tokens: list[int]) -> int:
    """The cached tokens an admission of ``tokens`` reports now (nothing kept)."""
    seq = Seq(list(tokens))
    admission = alloc.allocate(seq)
    assert admission is not None
    alloc.free(seq, persist=False)
    return admission.cached


def test_a_follow_up_turn_resumes_from_memory_as_a_cold_run(model, every):
    alloc = allocator(model)
    turn1 = prompt(29, 1)
    first, _ = run(model, alloc, turn1, chunk=11)  # chunked prefill: boundaries inside and between chunks
    follow = first.tokens + prompt(13, 2)  # turn 1 and its reply: 32 tokens, 4 full blocks
    assert admitted(alloc, follow) == saved(32, every) > 0
    seq, resumed = run(model, alloc, follow)
    assert seq.hashes[:4] == first.hashes[:4]  # the same chain
    close(resumed, cold(model, follow), 1e-5)
    close(resumed, standalone(model, follow), 1e-5)


def test_a_prefix_diverging_mid_block_resumes_at_the_last_saved_boundary_before(model, every):
    alloc = allocator(model)
    base = prompt(60, 3)
    run(model, alloc, base, decode=0)
    follow = base[:53] + prompt(10, 4)  # diverges inside block 6: blocks 0-5 (48 tokens) are cached
    assert admitted(alloc, follow) == saved(48, every) == 48
    _, resumed = run(model, alloc, follow)
    close(resumed, cold(model, follow), 1e-5)
    # the whole prompt cached: its last token is still computed, from a boundary before it
    assert admitted(alloc, base) == saved(56, every)
    _, again = run(model, alloc, base, decode=1)
    close(again, cold(model, base, decode=1), 1e-5)


def test_the_engine_resumes_from_memory_and_in_a_mixed_batch(model, every):
    params = SamplingParams(max_tokens=6)
    engine = Engine(model, set(), cache=CacheConfig(block_size=BS, num_blocks=64), max_batch_tokens=24)
    turn1 = prompt(27, 5)
    reply = engine.generate([Request(turn1, params)])[0].token_ids
    follow, other = turn1 + reply + prompt(7, 6), prompt(30, 7)
    before = engine.stats.prefill_tokens
    results = engine.generate([Request(follow, params), Request(other, params)])
    hit = saved((len(turn1) + len(reply) - 1) // BS * BS, every)
    assert results[0].cached_tokens == hit > 0 and results[1].cached_tokens == 0
    assert engine.stats.prefill_tokens - before == len(follow) - hit + len(other)
    for ids, result in zip((follow, other), results, strict=True):
        assert result.token_ids == [int(row.argmax()) for row in cold(model, ids, decode=5)]
    engine.close()


def test_a_new_engine_resumes_from_the_disk_tier(model, every, tmp_path):
    params = SamplingParams(max_tokens=5)
    cache = CacheConfig(block_size=BS, num_blocks=64, disk_folder=tmp_path)
    first = Engine(model, set(), cache=cache, namespace=b"q3n")
    turn1 = prompt(34, 8)
    reply = first.generate([Request(turn1, params)])[0].token_ids
    first.flush()
    first.close()
    files = sorted(tmp_path.rglob("*.kv"))
    assert len(files) == (34 + 5 - 1) // BS == 4
    kv_bytes = 2 * 2 * BS * 2 * 16 * 4  # two attention layers' keys and values
    with_states = [f for f in files if f.stat().st_size > kv_bytes + 6400]  # a block's saved states: 6400 B
    assert len(with_states) == 4 // every  # only the blocks that hold them carry them

    follow = turn1 + reply + prompt(9, 9)
    reopened = Engine(model, set(), cache=cache, namespace=b"q3n")
    result = reopened.generate([Request(follow, params)])[0]
    assert result.disk_tokens == result.cached_tokens == saved(32, every)
    assert result.token_ids == [int(row.argmax()) for row in cold(model, follow, decode=4)]
    reopened.close()
    # the same through the allocator, logits: disk -> a fresh allocator -> resumed
    alloc = allocator(model, disk_folder=tmp_path / "alloc")
    run(model, alloc, turn1 + reply, decode=0)
    alloc.flush()
    fresh = allocator(model, disk_folder=tmp_path / "alloc")
    _, resumed = run(model, fresh, follow)
    assert fresh.disk is not None and fresh.disk.hits == 4
    close(resumed, cold(model, follow), 1e-5)
    alloc.close()
    fresh.close()


def test_blocks_without_saved_states_are_never_resumed_from(model):
    """With every block's states wanted but few blocks holding them (one in 3), a sequence whose
    boundaries landed in blocks without them resumes at the last one that has them, or cold."""
    model.state_every = 3
    try:
        alloc = allocator(model)
        name = "0.state"
        base = prompt(70, 12)
        run(model, alloc, base, decode=0)
        table = alloc.blocks.lookup(alloc.blocks.chain(base[:64]))
        assert [alloc.pool.holds(name, b) for b in table] == [(k + 1) % 3 == 0 for k in range(8)]
        assert {b for b in table if b in alloc.stated} == {table[2], table[5]}
        # the saved boundaries go (their blocks reused by others): resume at none of them
        alloc.stated.clear()
        assert admitted(alloc, base) == 0
        _, again = run(model, alloc, base)
        close(again, cold(model, base), 1e-5)
        # the recomputed copies saved their states: they replace the old copies in the lookup
        assert admitted(alloc, base) == 48
        _, third = run(model, alloc, base)
        close(third, again, 1e-5)
    finally:
        model.state_every = STATE_EVERY


def test_cache_bytes_per_block_boundary(model, every):
    c = model.config
    streams = model.cache_streams(BS)
    channels = 2 * 2 * 16 + 4 * 8  # q, k (2 key heads x 16) and v (4 value heads x 8)
    conv, recurrent = channels * (4 - 1) * 4, 4 * 16 * 8 * 4  # float32 model
    assert conv + recurrent == 3200
    assert state_bytes(streams) == 2 * (conv + recurrent) == 6400  # two DeltaNet layers: one saved boundary
    engine = Engine(model, set(), cache=CacheConfig(block_size=BS, num_blocks=7))
    kv = 2 * 2 * BS * c.num_key_value_heads * c.head_dim * 4  # two attention layers' keys and values
    per_block = kv + 2 * (-(-conv // every) + -(-recurrent // every))  # the states amortised over `every`
    assert engine.block_bytes == per_block
    assert engine.pool.tensors["0.state"].shape[0] == -(-7 // every)  # rows for one block in `every`
    assert engine.pool.tensors["1.k"].shape[0] == 7 * BS
    engine.close()
    # Qwen3-Next-80B-A3B: 36 DeltaNet layers, 16 key / 32 value heads of 128, conv kernel 4, bf16
    big = state_streams(list(range(36)), 2 * 16 * 128 + 32 * 128, 4, 32, 128, 128, torch.bfloat16, 32, 16)
    assert state_bytes(big) == 36 * (8192 * 3 * 2 + 32 * 128 * 128 * 4) == 77_266_944  # 73.7 MiB
    kv80 = 12 * 2 * 2 * 256 * 2 * 32  # 12 attention layers, 2 KV heads of 256, bf16, 32-token blocks
    assert KVPool.bytes_per_block(big, 32) == 77_266_944 // 16 == 4_829_184  # amortised over 16 blocks
    assert kv80 == 786_432
    # without saved states: KV rows only, and no resumption
    from codeagent.backend.models.qwen3_next.model import Qwen3NextForCausalLM

    bare = Qwen3NextForCausalLM(c, prefix_states=False)
    assert state_bytes(bare.cache_streams(BS)) == 0 and not bare.resumes_from_blocks
    with pytest.raises(ValueError, match="cannot resume"):
        model.new_state(None, BS)


def test_a_copy_with_saved_states_replaces_one_without_on_disk(model, tmp_path):
    model.state_every = 3
    try:
        alloc = allocator(model, disk_folder=tmp_path)
        base = prompt(40, 13)
        run(model, alloc, base, decode=0, before_free=lambda seq: alloc.stated.clear())  # none saved
        alloc.flush()
        assert admitted(allocator(model, disk_folder=tmp_path), base) == 0  # on disk without states
        run(model, alloc, base, decode=0)  # recomputed (no stated block to resume at): saved this time
        alloc.flush()
        fresh = allocator(model, disk_folder=tmp_path)
        assert admitted(fresh, base) == 24
        _, resumed = run(model, fresh, base)
        close(resumed, cold(model, base), 1e-5)
        alloc.close()
        fresh.close()
    finally:
        model.state_every = STATE_EVERY
