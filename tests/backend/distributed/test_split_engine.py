"""The engine split across ranks (gloo on 127.0.0.1, one process per rank) generates exactly what
the single-process engine does (itself token-exact against transformers): every layout, mixed
batches, prefix hits from memory and disk, preemption; and a dead rank fails, never hangs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.distributed.launch import Workers, start
from codeagent.backend.engine import Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, load_model
from codeagent.backend.service import EngineService

PROMPTS = [[5, 17, 42, 99, 300, 7] * 6, [1, 2, 3], list(range(40, 95)), [250, 11] * 9]
LAYOUTS = [(2, False), (4, False), (2, True), (4, True)]


SHAPES = {"vocab_size": 301, "num_attention_heads": 8, "num_key_value_heads": 2}


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_moe_factory) -> Path:
    """8 query heads over 2 KV heads (replicated at tp 4), a vocabulary of 301 (not a multiple of
    4: the last rank's share is short), a dense layer between sparse ones."""
    folder = tmp_path_factory.mktemp("split")
    qwen3_moe_factory(**SHAPES).save_pretrained(folder)
    return folder


def requests(max_tokens: int = 10) -> list[Request]:
    return [Request(p, SamplingParams(max_tokens=max_tokens, ignore_eos=True)) for p in PROMPTS]


def single(folder: Path, cache: CacheConfig, max_tokens: int = 10) -> list[list[int]]:
    engine = Engine(load_model(folder).model, set(), cache=cache)
    return [r.token_ids for r in engine.generate(requests(max_tokens))]


class Split:
    """Rank 0's engine over a group whose other ranks this test started."""

    def __init__(self, folder: Path, tp: int, ep: bool, cache: CacheConfig) -> None:
        self.group, self.workers, _ = start(folder, "float32", "cpu", tp, ep)
        self.engine = Engine(load_model(folder, group=self.group).model, set(), cache=cache, group=self.group)

    def close(self) -> None:
        self.engine.close()
        self.workers.close()
        self.group.close()


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEAGENT_DIST_TIMEOUT", "60")


@pytest.mark.parametrize(("tp", "ep"), LAYOUTS)
def test_every_layout_generates_the_single_engines_tokens(split_dir: Path, tp: int, ep: bool) -> None:
    cache = CacheConfig(block_size=8, num_blocks=96)
    expected = single(split_dir, cache)
    split = Split(split_dir, tp, ep, cache)
    try:
        first = split.engine.generate(requests())
        again = split.engine.generate(requests())  # the same prompts: prefix hits from memory
    finally:
        split.close()
    assert [r.token_ids for r in first] == expected
    assert [r.token_ids for r in again] == expected
    assert [r.cached_tokens for r in again] == [(len(p) - 1) // 8 * 8 for p in PROMPTS]
    assert split.workers.failed() is None
    assert split.workers.log is not None and not split.workers.log.exists()  # removed: all ended well


def test_the_split_engine_matches_transformers(split_dir: Path, reference_greedy, qwen3_moe_factory) -> None:
    reference = qwen3_moe_factory(**SHAPES)
    split = Split(split_dir, 2, False, CacheConfig(block_size=8, num_blocks=64))
    try:
        got = split.engine.generate([Request(PROMPTS[0], SamplingParams(max_tokens=8, ignore_eos=True))])[0]
    finally:
        split.close()
    assert got.token_ids == reference_greedy(reference, PROMPTS[0], 8)


def test_preempted_requests_recompute_the_same_tokens(split_dir: Path) -> None:
    cache = CacheConfig(block_size=8, num_blocks=20, prefix_caching=False)  # too few for all four at once
    expected = single(split_dir, cache, max_tokens=24)
    split = Split(split_dir, 2, True, cache)
    try:
        got = [r.token_ids for r in split.engine.generate(requests(24))]
        preemptions = split.engine.stats.preemptions
    finally:
        split.close()
    assert preemptions > 0
    assert got == expected


def test_disk_hits_are_per_rank_and_per_layout(split_dir: Path, tmp_path: Path) -> None:
    cache = CacheConfig(block_size=8, num_blocks=96, disk_folder=tmp_path / "kv")
    expected = single(split_dir, CacheConfig(block_size=8, num_blocks=96))
    split = Split(split_dir, 2, False, cache)
    try:
        split.engine.generate(requests())
        split.engine.flush()
    finally:
        split.close()  # the followers write their exports before they exit
    folders = sorted(p.name for p in (tmp_path / "kv").glob("*/rank*"))
    assert folders == ["rank0", "rank1"]
    counts = [len(list(p.iterdir())) for p in sorted((tmp_path / "kv").glob("*/rank*"))]
    assert counts[0] == counts[1] > 0

    again = Split(split_dir, 2, False, cache)  # a fresh group: its pools are empty, its disks are not
    try:
        results = again.engine.generate(requests())
    finally:
        again.close()
    assert [r.token_ids for r in results] == expected
    assert sum(r.disk_tokens for r in results) > 0

    other = Engine(load_model(split_dir).model, set(), cache=cache)  # one process: another layout
    assert sum(r.disk_tokens for r in other.generate(requests())) == 0
    other.close()


def test_a_dead_rank_fails_the_step_and_the_service_quickly(split_dir: Path) -> None:
    split = Split(split_dir, 2, False, CacheConfig(block_size=8, num_blocks=64))
    service = EngineService(split.engine)
    try:
        assert service.submit(PROMPTS[1], SamplingParams(max_tokens=4)).wait().finish_reason == "length"
        os.kill(split.workers.processes[0].pid, signal.SIGKILL)
        split.workers.processes[0].wait()
        started = time.monotonic()
        result = service.submit(PROMPTS[0], SamplingParams(max_tokens=50, ignore_eos=True)).wait()
        assert time.monotonic() - started < 60
        assert result.finish_reason == "error" and "rank" in (result.error or "")
        assert service.broken
        with pytest.raises(RuntimeError, match="engine is down"):
            service.submit(PROMPTS[1], SamplingParams(max_tokens=4))
    finally:
        service.close()
        split.workers.close(timeout=1)
        split.group.close()
    log = split.workers.log
    assert log is not None and log.exists()  # a rank died: its log is kept for the user
    log.unlink()


def test_a_layout_the_model_cannot_take_is_a_load_error(split_dir: Path) -> None:
    with pytest.raises(LoadError, match="does not divide across 3 ranks"):
        from codeagent.backend.runtime import load

        load(split_dir, "float32", "cpu", tp=3)


def test_the_dead_rank_error_names_the_rank_and_its_log(split_dir: Path) -> None:
    workers = Workers()
    assert workers.failed() is None
    group, workers, _ = start(split_dir, "float32", "cpu", 2)
    try:
        os.kill(workers.processes[0].pid, signal.SIGKILL)
        workers.processes[0].wait()
        assert (workers.failed() or "").startswith("rank 1 exited with status -9")
    finally:
        workers.close(timeout=1)
        group.close()
    assert torch.distributed.is_initialized() is False


def test_streaming_and_cancellation_through_the_service(split_dir: Path) -> None:
    cache = CacheConfig(block_size=8, num_blocks=96)
    expected = single(split_dir, cache)
    split = Split(split_dir, 2, False, cache)
    service = EngineService(split.engine)
    try:
        doomed = service.submit(PROMPTS[2], SamplingParams(max_tokens=500, ignore_eos=True))
        streamed = service.submit(PROMPTS[0], SamplingParams(max_tokens=10, ignore_eos=True))
        tokens = list(streamed)
        doomed.cancel()
        assert doomed.wait().finish_reason == "cancelled"
        assert tokens == streamed.wait().token_ids == expected[0]
        after = service.submit(PROMPTS[3], SamplingParams(max_tokens=10, ignore_eos=True)).wait()
        assert after.token_ids == expected[3]
    finally:
        service.close()
        split.workers.close()
        split.group.close()
