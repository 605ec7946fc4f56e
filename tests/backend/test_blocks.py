"""The block manager over a simulated pool: allocation, sharing by hash chain, LRU eviction."""

from __future__ import annotations

import pytest

from codeagent.backend.cache.blocks import BlockManager, OutOfBlocks

PROMPT = list(range(100, 110))  # 10 tokens: two full blocks of 4 and a partial one


def test_a_new_prompt_gets_fresh_blocks_and_registers_its_full_ones():
    manager = BlockManager(num_blocks=8, block_size=4)
    allocation = manager.allocate(PROMPT)
    assert len(allocation.table) == 3 and allocation.cached_tokens == 0
    assert len(manager.by_hash) == 2  # the partial third block is private
    assert len(manager.evictable) == 5


def test_the_same_prefix_is_shared_and_counted():
    manager = BlockManager(num_blocks=8, block_size=4)
    first = manager.allocate(PROMPT)
    second = manager.allocate([*PROMPT[:8], 7, 7, 7])
    assert second.cached_tokens == 8 and second.table[:2] == first.table[:2]
    assert second.table[2] != first.table[2]
    assert [manager.blocks[b].ref_count for b in first.table[:2]] == [2, 2]


def test_a_different_first_block_or_namespace_misses():
    manager = BlockManager(num_blocks=8, block_size=4)
    manager.allocate(PROMPT)
    assert manager.allocate([0, *PROMPT[1:]]).cached_tokens == 0  # chained: one changed token misses all
    other_model = BlockManager(num_blocks=8, block_size=4, namespace=b"other-model")
    assert other_model.hashes(PROMPT) != manager.hashes(PROMPT)


def test_released_blocks_stay_cached_until_evicted_least_recently_released_first():
    manager = BlockManager(num_blocks=4, block_size=4)
    old = manager.allocate([1, 2, 3, 4, 5, 6, 7, 8])  # two full blocks
    manager.release(old.table)
    assert manager.allocate([1, 2, 3, 4, 5, 6, 7, 8, 9]).cached_tokens == 8  # hit after release
    manager.release(manager.allocate([1, 2, 3, 4]).table)  # same first block, shared then released again
    hit = manager.allocate([1, 2, 3, 4, 5, 6, 7, 8])
    assert hit.cached_tokens == 8


def test_eviction_reuses_the_least_recently_released_block_and_forgets_its_hash():
    manager = BlockManager(num_blocks=2, block_size=2)
    a = manager.allocate([1, 2])
    manager.release(a.table)
    b = manager.allocate([3, 4])
    manager.release(b.table)
    c = manager.allocate([5, 6, 7, 8])  # needs both blocks: evicts [1, 2] first, then [3, 4]
    assert c.cached_tokens == 0 and len(manager.by_hash) == 2
    manager.release(c.table)
    assert manager.allocate([1, 2]).cached_tokens == 0  # evicted


def test_blocks_in_use_are_never_evicted_and_a_full_pool_says_so():
    manager = BlockManager(num_blocks=3, block_size=4)
    held = manager.allocate(PROMPT)
    assert not manager.can_allocate([1])
    with pytest.raises(OutOfBlocks, match="1 blocks needed, 0 free"):
        manager.allocate([1])
    assert all(manager.blocks[b].ref_count == 1 for b in held.table)


def test_generated_tokens_join_the_cache_when_their_block_fills():
    manager = BlockManager(num_blocks=8, block_size=4)
    tokens = [1, 2, 3, 4, 5, 6]
    allocation = manager.allocate(tokens)
    for token in (7, 8, 9):  # decoding: the second block fills at 8, a third starts at 9
        tokens.append(token)
        manager.append(allocation.table, tokens)
    assert len(allocation.table) == 3 and len(manager.by_hash) == 2
    follow_up = manager.allocate([1, 2, 3, 4, 5, 6, 7, 8, 10, 11])
    assert follow_up.cached_tokens == 8  # the next turn hits the assistant's own reply
