"""The engine service: many threads submit at once and share one engine's batches."""

from __future__ import annotations

import threading

import pytest
import torch

from codeagent.backend.engine import CacheConfig, Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import load_model
from codeagent.backend.service import EngineService


@pytest.fixture(scope="module")
def model(qwen3_moe_dir):
    return load_model(qwen3_moe_dir).model


def make_service(model) -> EngineService:
    return EngineService(Engine(model, set(), cache=CacheConfig(block_size=8, num_blocks=128)))


def prompt(seed: int, length: int = 20) -> list[int]:
    return torch.randint(0, 512, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_concurrent_submitters_get_what_each_would_get_alone(model):
    alone = Engine(model, set(), cache=CacheConfig(block_size=8, num_blocks=128))
    expected = [
        r.token_ids
        for r in alone.generate([Request(prompt(s), SamplingParams(max_tokens=8)) for s in range(8)])
    ]
    service = make_service(model)
    results: dict[int, list[int]] = {}

    def client(seed: int) -> None:
        stream = service.submit(prompt(seed), SamplingParams(max_tokens=8))
        results[seed] = list(stream)
        assert stream.result is not None and stream.result.token_ids == results[seed]

    threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    service.close()
    assert [results[s] for s in range(8)] == expected
    assert service.engine.stats.steps < 8 * 8  # they shared steps


def test_cancel_frees_the_sequence_and_bad_requests_are_refused_up_front(model):
    service = make_service(model)
    stream = service.submit(prompt(1), SamplingParams(max_tokens=500))
    next(iter(stream))
    stream.cancel()
    assert stream.wait().finish_reason == "cancelled"
    assert service.active() == 0 and service.engine.blocks.free == 128
    with pytest.raises(ValueError, match="at least one prompt token"):
        service.submit([], SamplingParams())
    with pytest.raises(ValueError, match="pool holds"):
        service.submit(prompt(2), SamplingParams(max_tokens=5000))
    service.close()
