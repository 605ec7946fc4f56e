"""The disk tier: round trips, torn and corrupted files rejected, size cap, concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import time

import torch

from codeagent.backend.cache.blocks import chain_hash
from codeagent.backend.cache.disk import DiskTier

DIGEST = chain_hash(b"model", [1, 2, 3, 4])


def block(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "k.0": torch.randn(4, 2, 8, generator=generator),
        "v.0": torch.randn(4, 2, 8, generator=generator).bfloat16(),
        "ids": torch.arange(4),
    }


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path):
    tier = DiskTier(tmp_path)
    tier.put(DIGEST, block())
    back = tier.get(DIGEST)
    assert back is not None and set(back) == {"k.0", "v.0", "ids"}
    for name, tensor in block().items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor)
    assert tier.get(chain_hash(b"model", [9, 9, 9, 9])) is None and tier.misses == 1


def test_a_torn_file_is_never_read_back(tmp_path):
    tier = DiskTier(tmp_path)
    tier.put(DIGEST, block())
    path = tier.path(DIGEST)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a crash mid-write
    assert tier.get(DIGEST) is None and tier.rejected == 1 and not path.exists()
    tier.put(DIGEST, block())
    corrupted = bytearray(path.read_bytes())
    corrupted[-1] ^= 0xFF  # a flipped bit
    path.write_bytes(bytes(corrupted))
    assert tier.get(DIGEST) is None and tier.rejected == 2


def test_the_folder_is_capped_least_recently_used_first(tmp_path):
    probe = DiskTier(tmp_path / "size")
    probe.put(DIGEST, block())
    size = probe.path(DIGEST).stat().st_size
    tier = DiskTier(tmp_path / "capped", max_bytes=2 * size)
    digests = [chain_hash(b"m", [n]) for n in range(3)]
    for n, digest in enumerate(digests[:2]):
        tier.put(digest, block(n))
        os.utime(tier.path(digest), (time.time() - 100 + n, time.time() - 100 + n))
    assert tier.get(digests[0]) is not None  # refreshed: now the most recently used
    tier.put(digests[2], block(2))
    assert tier.get(digests[1]) is None  # the least recently used went
    assert tier.get(digests[0]) is not None and tier.get(digests[2]) is not None


def _writer(folder: str, _worker: int) -> None:
    tier = DiskTier(__import__("pathlib").Path(folder))
    for _ in range(20):
        tier.put(DIGEST, block(0))


def test_concurrent_writers_leave_one_valid_file(tmp_path):
    processes = [
        multiprocessing.get_context("spawn").Process(target=_writer, args=(str(tmp_path), n))
        for n in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    tier = DiskTier(tmp_path)
    back = tier.get(DIGEST)
    assert back is not None and torch.equal(back["k.0"], block(0)["k.0"])
    assert not list(tmp_path.glob(".tmp-*"))
