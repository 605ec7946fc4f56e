"""Requests that share a prompt and arrive together prefill it once (``scheduler.py``'s claims):
the others wait for its blocks, hit them, and compute only their own tail; their tokens are
those each request gets alone."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.engine import CacheConfig, Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import load_model

BLOCK = 8


@pytest.fixture(scope="module")
def model(qwen3_moe_dir):
    return load_model(qwen3_moe_dir).model


def engine(model, budget: int = 2048) -> Engine:
    return Engine(model, set(), cache=CacheConfig(block_size=BLOCK, num_blocks=256), max_batch_tokens=budget)


def ids(length: int, seed: int) -> list[int]:
    return torch.randint(0, 512, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def sampled(prompt: list[int], seed: int, new: int = 6) -> Request:
    return Request(prompt, SamplingParams(temperature=1.0, seed=seed, max_tokens=new))


@pytest.mark.parametrize("budget", [2048, 24])  # all admitted in one step; prefill in chunks
def test_four_identical_prompts_arriving_together_prefill_it_once(model, budget):
    prompt = ids(100, 1)
    e = engine(model, budget)
    results = e.generate([sampled(prompt, seed) for seed in range(4)])
    shared = (len(prompt) - 1) // BLOCK * BLOCK  # the partial last block stays private
    assert [r.cached_tokens for r in results] == [0, shared, shared, shared]
    assert e.stats.prefill_tokens == len(prompt) + 3 * (len(prompt) - shared)
    alone = [engine(model).generate([sampled(prompt, seed)])[0].token_ids for seed in range(4)]
    assert [r.token_ids for r in results] == alone  # holding changes no token
    assert len({tuple(tokens) for tokens in alone}) > 1  # the seeds do differ


def test_a_shared_prefix_with_different_tails_is_computed_once(model):
    prefix = ids(64, 2)
    prompts = [prefix + ids(5 + n, 10 + n) for n in range(3)]
    e = engine(model)
    results = e.generate([sampled(p, n) for n, p in enumerate(prompts)])
    assert [r.cached_tokens for r in results] == [0, 64, 64]
    assert e.stats.prefill_tokens == len(prompts[0]) + sum(len(p) - 64 for p in prompts[1:])


def test_a_held_request_goes_on_when_the_one_computing_its_prompt_is_cancelled(model):
    prompt = ids(120, 3)
    e = engine(model, budget=16)
    first, second = (e.add_request(sampled(prompt, seed)) for seed in (0, 1))
    e.step()
    assert first in e.running and second in e.waiting  # held: first computes the shared blocks
    e.abort(first.id)
    while e.has_work():
        e.step()
    assert first.finish == "cancelled" and second.finish == "length"
    assert second.result().cached_tokens == 16  # what first had registered before it went
    assert not e.scheduler.claims and not e.scheduler.claimed


def test_unrelated_requests_are_not_held(model):
    e = engine(model, budget=2048)
    for seed in range(3):
        e.add_request(sampled(ids(40, 20 + seed), seed))
    e.step()
    assert len(e.running) == 3 and not e.waiting
