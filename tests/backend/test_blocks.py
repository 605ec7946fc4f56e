"""The block manager over a simulated pool: allocation, sharing by hash chain, LRU eviction."""

from __future__ import annotations

import pytest

from codeagent.backend.cache.blocks import BlockManager, OutOfBlocks

PROMPT = list(range(100, 110))  # 10 tokens: two full blocks of 4 and a partial one


def take(manager: BlockManager, tokens: list[int]) -> tuple[list[int], int]:
    """What the engine does on admission: share the cached prefix, fresh blocks for the rest,
    then (once computed) register the full blocks. Returns the table and the cached tokens."""
    digests = manager.chain(tokens)
    hits = manager.lookup(digests)
    total = -(-len(tokens) // manager.block_size)
    if manager.blocks_needed(hits, total) > manager.free:
        raise OutOfBlocks("full")
    table = [manager.acquire(b) for b in hits]
    while len(table) < total:
        table.append(manager.fresh())
    for block, digest in zip(table, digests, strict=False):
        manager.register(block, digest)
    return table, len(hits) * manager.block_size


def test_a_new_prompt_gets_fresh_blocks_and_only_full_computed_blocks_are_shared():
    manager = BlockManager(num_blocks=8, block_size=4)
    digests = manager.chain(PROMPT)
    assert len(digests) == 2  # the partial third block has no hash
    table = [manager.fresh() for _ in range(3)]
    assert manager.lookup(digests) == []  # nothing registered until computed
    manager.register(table[0], digests[0])
    assert manager.lookup(digests) == [table[0]]
    assert manager.free == 5


def test_the_same_prefix_is_shared_and_counted():
    manager = BlockManager(num_blocks=8, block_size=4)
    first, _ = take(manager, PROMPT)
    second, cached = take(manager, [*PROMPT[:8], 7, 7, 7])
    assert cached == 8 and second[:2] == first[:2] and second[2] != first[2]
    assert [manager.blocks[b].ref_count for b in first[:2]] == [2, 2]


def test_a_different_first_block_or_namespace_misses():
    manager = BlockManager(num_blocks=8, block_size=4)
    take(manager, PROMPT)
    assert take(manager, [0, *PROMPT[1:]])[1] == 0  # chained: one changed token misses every block
    other_model = BlockManager(num_blocks=8, block_size=4, namespace=b"other-model")
    assert other_model.chain(PROMPT) != manager.chain(PROMPT)


def test_released_blocks_stay_cached_until_evicted():
    manager = BlockManager(num_blocks=4, block_size=4)
    table, _ = take(manager, [1, 2, 3, 4, 5, 6, 7, 8])
    manager.release(table)
    assert table == [] and manager.free == 4
    again, cached = take(manager, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert cached == 8 and manager.free == 1  # two revived, one fresh
    assert sorted(again[:2]) == sorted(set(again[:2])) and len(again) == 3


def test_eviction_reuses_the_least_recently_released_block_and_forgets_its_hash():
    manager = BlockManager(num_blocks=3, block_size=2)
    a, _ = take(manager, [1, 2])
    manager.release(a)
    b, _ = take(manager, [3, 4])
    manager.release(b)
    c, _ = take(manager, [5, 6, 7, 8])  # two blocks: the never-used one, then [1, 2]'s
    assert manager.lookup(manager.chain([3, 4])) != []
    manager.release(c)
    assert manager.lookup(manager.chain([1, 2])) == []  # evicted
    assert manager.lookup(manager.chain([5, 6, 7, 8])) != []


def test_blocks_without_a_hash_are_reused_before_cached_ones():
    manager = BlockManager(num_blocks=3, block_size=2)
    cached, _ = take(manager, [1, 2])
    manager.release(cached)
    first, second = manager.fresh(), manager.fresh()  # private blocks, never registered
    manager.release([first, second])
    assert {manager.fresh(), manager.fresh()} == {first, second}
    assert manager.lookup(manager.chain([1, 2])) != []  # the cached block survived


def test_blocks_in_use_are_never_evicted_and_a_full_pool_says_so():
    manager = BlockManager(num_blocks=3, block_size=4)
    held, _ = take(manager, PROMPT)
    assert manager.free == 0
    with pytest.raises(OutOfBlocks):
        manager.fresh()
    assert all(manager.blocks[b].ref_count == 1 for b in held)


def test_generated_tokens_join_the_cache_when_their_block_fills():
    manager = BlockManager(num_blocks=8, block_size=4)
    tokens = [1, 2, 3, 4, 5, 6]
    table, _ = take(manager, tokens)
    tokens += [7, 8, 9]  # decoding: the second block fills at 8, a third starts at 9
    table.append(manager.fresh())
    digests = manager.chain(tokens)
    manager.register(table[1], digests[1])
    _, cached = take(manager, [1, 2, 3, 4, 5, 6, 7, 8, 10, 11])
    assert cached == 8  # the next turn hits the assistant's own reply
