"""The disk tier of the prefix cache: finished blocks' KV saved by hash, read back on reopen.

One file per block, named by its chain hash (hex), under a cache folder (default
``$XDG_CACHE_HOME/codeagent/kv/<namespace>``). A file is written to a temporary name and
renamed into place, so readers see a whole file or none, and concurrent processes writing
the same block simply replace each other's identical content. Each file carries a header
with a magic tag, the payload length and a SHA-256 of the payload: a torn or corrupted file
(a crash mid-write that still got renamed, a disk error, a truncated copy) fails the check
and is deleted instead of being read back as valid. The folder is capped in bytes; the
least recently used files (by modification time, refreshed on every hit) go first. The
folder's size is scanned once and then tracked as files are written, with a full scan
(and trimming) only when the running total passes the cap.

Payloads are raw tensor bytes plus a small JSON description (names, dtypes, shapes), never
pickles. ``DiskWriter`` writes on a background thread, so finishing a request never waits
for the disk; a write that fails (a full or read-only disk) costs the cache, never the request.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import struct
import tempfile
import threading
from pathlib import Path

import torch

from codeagent import xdg

MAGIC = b"CAKV1\0"
HEADER = struct.Struct("<6sQ32s")  # magic, payload length, sha256(payload)


def default_root() -> Path:
    """Where the disk tier lives unless told: ``$XDG_CACHE_HOME/codeagent/kv`` (one folder per model)."""
    return xdg.folder("cache") / "kv"


def encode(tensors: dict[str, torch.Tensor]) -> bytes:
    """A JSON index followed by each tensor's raw bytes (CPU, contiguous)."""
    parts, index, offset = [], [], 0
    for name, tensor in tensors.items():
        raw = tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
        index.append(
            {
                "name": name,
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "shape": list(tensor.shape),
                "offset": offset,
                "size": len(raw),
            }
        )
        parts.append(raw)
        offset += len(raw)
    head = json.dumps(index).encode()
    return struct.pack("<I", len(head)) + head + b"".join(parts)


def decode(payload: bytes) -> dict[str, torch.Tensor]:
    (length,) = struct.unpack_from("<I", payload)
    index = json.loads(payload[4 : 4 + length])
    body = memoryview(payload)[4 + length :]
    out = {}
    for entry in index:
        raw = bytearray(body[entry["offset"] : entry["offset"] + entry["size"]])
        flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        out[entry["name"]] = flat.view(getattr(torch, entry["dtype"])).reshape(entry["shape"])
    return out


class DiskTier:
    def __init__(self, folder: Path, max_bytes: int = 8 * 2**30) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = self.rejected = 0
        self._bytes = self._scan_bytes()  # an estimate between scans: other processes write here too

    def path(self, digest: bytes) -> Path:
        return self.folder / f"{digest.hex()}.kv"

    def put(self, digest: bytes, tensors: dict[str, torch.Tensor]) -> None:
        payload = encode(tensors)
        data = HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".kv")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, self.path(digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._bytes += len(data)
        if self._bytes > self.max_bytes:  # a full scan only when the estimate says the cap is passed
            self.trim()

    def get(self, digest: bytes) -> dict[str, torch.Tensor] | None:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        if not self._valid(data):
            self.rejected += 1
            path.unlink(missing_ok=True)
            return None
        self.hits += 1
        os.utime(path)  # recently used: trimmed last
        return decode(data[HEADER.size :])

    @staticmethod
    def _valid(data: bytes) -> bool:
        if len(data) < HEADER.size:
            return False
        magic, length, checksum = HEADER.unpack_from(data)
        payload = data[HEADER.size :]
        return magic == MAGIC and length == len(payload) and hashlib.sha256(payload).digest() == checksum

    def _scan_bytes(self) -> int:
        total = 0
        for path in self.folder.glob("*.kv"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def trim(self) -> None:
        """Delete the least recently used files until the folder fits ``max_bytes``."""
        files = []
        for path in self.folder.glob("*.kv"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # another process trimmed it
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._bytes = total


class DiskWriter:
    """Writes blocks to a disk tier on a background thread, in the order they are queued."""

    def __init__(self, disk: DiskTier) -> None:
        self.disk = disk
        self.queue: queue.Queue[tuple[bytes, dict[str, torch.Tensor]] | None] = queue.Queue()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="codeagent-kv-writer", daemon=True)
        self.thread.start()

    def put(self, digest: bytes, rows: dict[str, torch.Tensor]) -> None:
        self.queue.put((digest, rows))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self.disk.put(*item)
            except OSError as err:
                self.errors.append(str(err))
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def flush(self) -> None:
        """Wait until every queued block is written."""
        self.queue.join()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
