"""The engine on tiny Qwen3-MoE: continuous batching, chunked prefill, prefix cache in memory and on
disk (torn files and payloads that are not the pool's blocks recomputed), preemption,
cancellation; every greedy output equal to transformers' full forward."""

from __future__ import annotations

import hashlib

import pytest
import torch

from codeagent.backend.cache.disk import HEADER, MAGIC, decode, encode
from codeagent.backend.engine import CacheConfig, CapacityError, Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import load_model, model_fingerprint

NEW = 12


def prompt(length: int, seed: int) -> list[int]:
    return torch.randint(0, 512, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.fixture(scope="module")
def model(qwen3_moe_dir):
    return load_model(qwen3_moe_dir).model


@pytest.fixture(scope="module")
def expected(qwen3_reference, reference_greedy):
    """The reference's greedy continuation of a prompt, memoised."""
    memo: dict[tuple[int, ...], list[int]] = {}

    def greedy(ids: list[int]) -> list[int]:
        if tuple(ids) not in memo:
            memo[tuple(ids)] = reference_greedy(qwen3_reference, ids, NEW)
        return memo[tuple(ids)]

    return greedy


def engine(model, namespace: bytes = b"", **cache) -> Engine:
    options = {"block_size": 8, "num_blocks": 256, **cache}
    return Engine(model, set(), cache=CacheConfig(**options), max_batch_tokens=64, namespace=namespace)


def request(ids: list[int], new: int = NEW) -> Request:
    return Request(ids, SamplingParams(max_tokens=new))


def test_batched_requests_with_chunked_prefill_match_the_reference(model, expected):
    prompts = [prompt(n, seed) for seed, n in enumerate((5, 70, 33, 150))]  # longer than a step's budget
    results = engine(model).generate([request(p) for p in prompts])
    assert [r.token_ids for r in results] == [expected(p) for p in prompts]
    assert all(r.cached_tokens == 0 and r.finish_reason == "length" for r in results)


def test_requests_joining_while_others_decode_get_the_same_tokens(model, expected):
    e = engine(model)
    first = e.add_request(request(prompt(40, 7)))
    for _ in range(5):
        e.step()
    assert first.generated  # decoding has started
    late = e.add_request(request(prompt(90, 8)))
    while e.has_work():
        e.step()
    assert first.result().token_ids == expected(prompt(40, 7))
    assert late.result().token_ids == expected(prompt(90, 8))


def test_a_follow_up_turn_hits_the_prompt_and_the_reply_and_computes_only_the_rest(model, expected):
    e = engine(model)
    turn1 = prompt(60, 11)
    reply = e.generate([request(turn1)])[0].token_ids
    turn2 = turn1 + reply + prompt(20, 12)
    before = e.stats.prefill_tokens
    result = e.generate([request(turn2)])[0]
    assert result.cached_tokens == (len(turn1) + len(reply) - 1) // 8 * 8  # the reply's full blocks too
    assert result.cached_tokens > len(turn1)
    assert e.stats.prefill_tokens - before == len(turn2) - result.cached_tokens
    assert result.token_ids == expected(turn2)


def test_a_prompt_already_cached_whole_still_computes_its_last_token(model, expected):
    e = engine(model)
    ids = prompt(32, 13)  # four full blocks
    e.generate([request(ids)])
    again = e.generate([request(ids)])[0]
    assert again.cached_tokens == 24 and again.token_ids == expected(ids)


def test_the_disk_tier_serves_a_new_engine_of_the_same_model_only(model, qwen3_moe_dir, expected, tmp_path):
    ids = prompt(75, 14)
    namespace = model_fingerprint(qwen3_moe_dir)
    first = engine(model, disk_folder=tmp_path, namespace=namespace)
    assert first.generate([request(ids)])[0].token_ids == expected(ids)
    first.flush()
    first.close()
    files = sorted(tmp_path.rglob("*.kv"))
    assert len(files) == (75 + NEW - 1) // 8  # every full computed block, the reply's included

    reopened = engine(model, disk_folder=tmp_path, namespace=namespace)
    reopened_other = engine(model, disk_folder=tmp_path)  # another model's namespace: nothing shared
    assert reopened_other.generate([request(ids)])[0].disk_tokens == 0

    result = reopened.generate([request(ids)])[0]
    assert result.disk_tokens == result.cached_tokens == 72 and result.token_ids == expected(ids)


def test_a_torn_disk_block_is_recomputed_not_trusted(model, expected, tmp_path):
    ids = prompt(40, 15)
    first = engine(model, disk_folder=tmp_path)
    first.generate([request(ids)])
    first.close()
    files = sorted(tmp_path.rglob("*.kv"), key=lambda p: p.stat().st_mtime_ns)
    assert files
    for path in files:  # a crash mid-write that still got renamed: truncate every block
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    second = engine(model, disk_folder=tmp_path)
    result = second.generate([request(ids)])[0]
    assert result.disk_tokens == 0 and second.disk is not None and second.disk.rejected == 1
    assert result.token_ids == expected(ids)


def _bad_payload(path, how: str) -> None:
    """Rewrite a block file with a payload that is not this pool's block, checksum and all."""
    rows = decode(path.read_bytes()[HEADER.size :])
    if how == "truncated":
        payload = encode(rows)[:-5]
    else:
        name = next(iter(rows))
        rows[name] = rows[name].flatten() if how == "shape" else rows[name].double()
        payload = encode(rows)
    path.write_bytes(HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload)


@pytest.mark.parametrize("how", ["truncated", "shape", "dtype"])
def test_a_block_file_with_a_valid_checksum_but_a_bad_payload_is_dropped_and_recomputed(
    model, expected, tmp_path, how
):
    ids = prompt(40, 16)
    first = engine(model, disk_folder=tmp_path, namespace=b"bad-payload")
    first.generate([request(ids)])
    first.close()
    second = engine(model, disk_folder=tmp_path, namespace=b"bad-payload")
    digests = second.blocks.chain(ids[:32])  # the prompt's first four blocks, in order
    assert all(second.disk.path(d).exists() for d in digests)
    _bad_payload(second.disk.path(digests[2]), how)
    result = second.generate([request(ids)])[0]
    assert result.finish_reason == "length" and result.token_ids == expected(ids)  # computed, not failed
    assert result.disk_tokens == 16  # the two blocks before the bad one
    assert second.disk.dropped == 1
    second.close()  # the recomputed block goes back to disk
    third = engine(model, disk_folder=tmp_path, namespace=b"bad-payload")
    again = third.generate([request(ids)])[0]
    assert again.disk_tokens == 32 and again.token_ids == expected(ids) and third.disk.dropped == 0


def test_preemption_under_a_tiny_pool_recomputes_and_never_truncates(model, expected):
    prompts = [prompt(20, seed) for seed in (20, 21, 22)]
    # each request takes 3 blocks of 8 to start and 4 by its end: 7 blocks admit two, and the
    # second to need its fourth block finds none
    e = engine(model, num_blocks=7)
    results = e.generate([request(p) for p in prompts])
    assert e.stats.preemptions > 0
    assert [r.token_ids for r in results] == [expected(p) for p in prompts]
    assert e.blocks.free == 7


def test_a_request_larger_than_the_pool_is_refused_with_the_numbers(model):
    e = engine(model, num_blocks=4)
    with pytest.raises(CapacityError, match="pool holds 32"):
        e.add_request(request(prompt(30, 1), new=8))


def test_cancelling_frees_the_sequence_at_the_next_step(model):
    e = engine(model)
    keep = e.add_request(request(prompt(10, 30), new=40))
    gone = e.add_request(request(prompt(10, 31), new=40))
    for _ in range(3):
        e.step()
    e.abort(gone.id)
    e.step()
    assert gone.finish == "cancelled" and gone not in e.running and keep in e.running
    while e.has_work():
        e.step()
    assert keep.result().finish_reason == "length" and e.blocks.free == 256


def test_the_hook_stops_a_sequence_and_sampling_is_reproducible_per_request(model):
    seen: list[int] = []

    def hook(token: int) -> bool:
        seen.append(token)
        return len(seen) < 3

    e = engine(model)
    stopped = e.generate([Request(prompt(10, 40), SamplingParams(max_tokens=20), hook)])[0]
    assert stopped.finish_reason == "stop" and len(stopped.token_ids) == 3
    sampled = SamplingParams(temperature=1.0, top_p=0.9, seed=5, max_tokens=10)
    alone = e.generate([Request(prompt(10, 41), sampled)])[0].token_ids
    crowded = e.generate(
        [Request(prompt(30, s), SamplingParams(max_tokens=10)) for s in (42, 43)]
        + [Request(prompt(10, 41), sampled)]
    )[-1].token_ids
    assert alone == crowded


def test_the_pool_is_sized_from_memory_when_not_given(model):
    e = Engine(model, set(), cache=CacheConfig(block_size=8, memory_bytes=1 << 20))
    assert e.pool.num_blocks == (1 << 20) // e.block_bytes and e.capacity_tokens == e.pool.num_blocks * 8


def test_grouped_experts_equal_the_per_expert_loop():
    from codeagent.backend.layers import moe

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(6, 16, generator=generator)
    w13, w2 = torch.randn(5, 8, 16, generator=generator), torch.randn(5, 16, 4, generator=generator)
    ids = torch.tensor([[0, 2], [2, 4], [4, 0], [2, 1], [1, 0], [4, 2]])  # expert 3 gets nothing
    counts = torch.bincount(ids.reshape(-1), minlength=5)
    inputs = x[torch.argsort(ids.reshape(-1), stable=True) // 2]
    if not moe.grouped_mm_available(x):
        pytest.skip("this PyTorch has no grouped matmul on the CPU")
    assert torch.allclose(
        moe._grouped(inputs, w13, w2, counts), moe._per_expert(inputs, w13, w2, counts.tolist()), atol=1e-5
    )
