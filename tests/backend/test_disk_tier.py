"""The disk tier: round trips, torn and corrupted files rejected, payloads that pass their checksum
but are not tensors dropped, leftovers of killed writers cleaned, size cap, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import signal
import struct
import time
from pathlib import Path

import pytest
import torch

from codeagent.backend.cache.blocks import chain_hash
from codeagent.backend.cache.disk import HEADER, MAGIC, STALE_TEMP_S, DiskTier, encode

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


def with_checksum(payload: bytes) -> bytes:
    """A block file around ``payload`` whose header and checksum hold."""
    return HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def index_payload(index: object, body: bytes = b"") -> bytes:
    head = json.dumps(index).encode()
    return struct.pack("<I", len(head)) + head + body


BAD_PAYLOADS = {
    "truncated tensor data": encode(block())[:-7],
    "an index that is not JSON": struct.pack("<I", 5) + b"{oops" + bytes(16),
    "an unknown dtype": index_payload(
        [{"name": "k.0", "dtype": "complex999", "shape": [2], "offset": 0, "size": 8}], bytes(8)
    ),
    "a shape its bytes do not fill": index_payload(
        [{"name": "k.0", "dtype": "float32", "shape": [3, 2], "offset": 0, "size": 8}], bytes(8)
    ),
    "an index that is not a list": index_payload({"k.0": 1}),
    "too short for an index": b"\x01",
}


@pytest.mark.parametrize("case", BAD_PAYLOADS)
def test_a_payload_that_passes_its_checksum_but_is_not_tensors_is_dropped_once(tmp_path, caplog, case):
    tier = DiskTier(tmp_path)
    tier.put(DIGEST, block())
    path = tier.path(DIGEST)
    path.write_bytes(with_checksum(BAD_PAYLOADS[case]))
    assert tier._valid(path.read_bytes())  # the checksum holds: only the payload is wrong
    with caplog.at_level(logging.WARNING, logger="codeagent.backend.cache.disk"):
        assert tier.get(DIGEST) is None  # a miss, not an exception
        assert tier.get(DIGEST) is None  # gone: the second look is a plain miss
    assert not path.exists() and tier.dropped == 1 and tier.misses == 1 and tier.rejected == 0
    assert len([r for r in caplog.records if "dropped block" in r.getMessage()]) == 1
    tier.put(DIGEST, block())  # computed again and written back
    assert torch.equal(tier.get(DIGEST)["k.0"], block()["k.0"])


def _killed_mid_write(folder: str) -> None:
    """A writer that dies (SIGKILL) after writing half a block to its temporary file."""
    tier = DiskTier(Path(folder))
    fd, _ = tier.temporary_file()
    os.write(fd, with_checksum(encode(block()))[:100])
    os.kill(os.getpid(), signal.SIGKILL)


def test_opening_the_tier_removes_what_killed_writers_left_and_nothing_else(tmp_path):
    folder, outside = tmp_path / "kv", tmp_path / "outside"
    outside.mkdir()
    child = multiprocessing.get_context("spawn").Process(target=_killed_mid_write, args=(str(folder),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    (left,) = folder.glob(".tmp-*.kv")  # the killed writer's file, never renamed
    writer = DiskTier(folder)  # opened while the leftover is new: a live writer's, maybe
    assert writer.cleaned == 0 and left.exists()
    writer.put(DIGEST, block())
    target = outside / ".tmp-victim.kv"
    target.write_bytes(b"not ours")
    (folder / ".tmp-link0000.kv").symlink_to(target)  # our pattern, but a symlink: never followed
    (folder / ".tmp-notes.txt").write_text("not our pattern")
    (folder / "rank1").mkdir()
    nested = folder / "rank1" / ".tmp-nested1.kv"  # another tier's folder: not this one's to clean
    nested.write_bytes(b"x")
    old = time.time() - STALE_TEMP_S - 5
    for path in (left, nested):
        os.utime(path, (old, old))
    os.utime(folder / ".tmp-link0000.kv", (old, old), follow_symlinks=False)
    fd, fresh = writer.temporary_file()  # a live writer's, just made
    os.close(fd)

    tier = DiskTier(folder)
    assert tier.cleaned == 1 and not left.exists()
    assert Path(fresh).exists() and nested.exists() and (folder / ".tmp-notes.txt").exists()
    assert (folder / ".tmp-link0000.kv").is_symlink() and target.read_bytes() == b"not ours"
    assert tier.get(DIGEST) is not None  # blocks stay
    assert tier._scan_bytes() == tier.path(DIGEST).stat().st_size  # temporaries are not counted
