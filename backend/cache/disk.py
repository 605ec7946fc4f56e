"""The disk tier of the prefix cache: finished blocks' KV saved by hash, read back on reopen.

One file per block, named by its chain hash (hex), under a cache folder (default
``$XDG_CACHE_HOME/codeagent/kv/<namespace>``). A file is written to a temporary name and
renamed into place, so readers see a whole file or none, and concurrent processes writing
the same block simply replace each other's identical content. Each file carries a header
with a magic tag, the payload length and a SHA-256 of the payload: a torn or corrupted file
(a crash mid-write that still got renamed, a disk error, a truncated copy) fails the check
and is deleted instead of being read back as valid. A file whose checksum holds but whose
payload is not tensors (an index that is not JSON, an unknown dtype, a shape its bytes do
not fill: another version's writer, a bug) is ``BadPayload``: logged once, deleted, and a
miss, so the request computes those tokens cold; so is a block whose tensors do not fit the
pool (the allocator calls ``drop``). The folder is capped in bytes; the
least recently used files (by modification time, refreshed on every hit) go first. The
folder's size is scanned once and then tracked as files are written, with a full scan
(and trimming) only when the running total passes the cap.

A writer killed mid-write leaves its temporary file (``.tmp-<random>.kv``, never renamed).
Opening a tier removes those left in its own folder: only names of that pattern, only
regular files (a symlink is never followed nor removed), never in subfolders, and only when
untouched for ``STALE_TEMP_S`` (another live process may be writing its own right now).
Counting and trimming look only at block files (``<64 hex digits>.kv``).

Payloads are raw tensor bytes plus a small JSON description (names, dtypes, shapes), never
pickles. ``DiskWriter`` writes on a background thread, so finishing a request never waits
for the disk; a write that fails (a full or read-only disk) costs the cache, never the request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import re
import struct
import tempfile
import threading
import time
from pathlib import Path

import torch

from codeagent import xdg

MAGIC = b"CAKV1\0"
HEADER = struct.Struct("<6sQ32s")  # magic, payload length, sha256(payload)
BLOCK_NAME = re.compile(r"[0-9a-f]{64}\.kv")  # a block file: its chain hash
TEMP_NAME = re.compile(r"\.tmp-[a-z0-9_]+\.kv")  # put()'s temporary files (tempfile.mkstemp's names)
STALE_TEMP_S = 60.0  # a temporary file untouched this long has no live writer

log = logging.getLogger(__name__)


class BadPayload(ValueError):
    """A block file whose checksum holds but whose payload cannot be read back as tensors."""


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
    """The tensors of ``encode``'s payload; ``BadPayload`` when it does not describe them."""
    try:
        (length,) = struct.unpack_from("<I", payload)
        index = json.loads(payload[4 : 4 + length])
    except (struct.error, ValueError) as err:
        raise BadPayload(f"its index cannot be read ({err})") from None
    if not isinstance(index, list):
        raise BadPayload("its index is not a list of tensors")
    body = memoryview(payload)[4 + length :]
    return dict(_tensor(entry, body) for entry in index)


def _tensor(entry: object, body: memoryview) -> tuple[str, torch.Tensor]:
    """One index entry's tensor, checked against the body before any view is taken."""
    if not isinstance(entry, dict):
        raise BadPayload("an index entry is not an object")
    name, dtype, shape = entry.get("name"), getattr(torch, str(entry.get("dtype")), None), entry.get("shape")
    offset, size = entry.get("offset"), entry.get("size")
    if not isinstance(name, str) or not isinstance(dtype, torch.dtype):
        raise BadPayload(f"an entry has no name or an unknown dtype ({entry.get('dtype')!r})")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise BadPayload(f"{name} has no valid shape")
    if not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or offset + size > len(body):
        raise BadPayload(f"{name} lies outside the payload")
    if size != math.prod(shape) * dtype.itemsize:
        raise BadPayload(f"{name}'s {size} bytes do not hold {dtype} {shape}")
    raw = bytearray(body[offset : offset + size])
    flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    return name, flat.view(dtype).reshape(shape)


class DiskTier:
    def __init__(self, folder: Path, max_bytes: int = 8 * 2**30) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = self.rejected = self.dropped = 0
        self.cleaned = self._clean_temporaries()
        self._bytes = self._scan_bytes()  # an estimate between scans: other processes write here too

    def path(self, digest: bytes) -> Path:
        return self.folder / f"{digest.hex()}.kv"

    def put(self, digest: bytes, tensors: dict[str, torch.Tensor]) -> None:
        payload = encode(tensors)
        data = HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload
        fd, tmp = self.temporary_file()
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

    def temporary_file(self) -> tuple[int, str]:
        """A new file to write a block into before renaming it (a descriptor and its path)."""
        return tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".kv")  # TEMP_NAME's names

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
        try:
            tensors = decode(data[HEADER.size :])
        except BadPayload as err:
            self.drop(digest, str(err))
            return None
        self.hits += 1
        os.utime(path)  # recently used: trimmed last
        return tensors

    def drop(self, digest: bytes, why: str) -> None:
        """Delete a block file that passed its checksum but cannot be used; it becomes a miss."""
        self.dropped += 1
        self.path(digest).unlink(missing_ok=True)
        log.warning("KV disk tier: dropped block %s (%s); it is computed again", digest.hex()[:16], why)

    @staticmethod
    def _valid(data: bytes) -> bool:
        if len(data) < HEADER.size:
            return False
        magic, length, checksum = HEADER.unpack_from(data)
        payload = data[HEADER.size :]
        return magic == MAGIC and length == len(payload) and hashlib.sha256(payload).digest() == checksum

    def _clean_temporaries(self) -> int:
        """Remove temporary files writers left behind (see the module docstring); how many."""
        removed, now = 0, time.time()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not TEMP_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMP_S:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # another process cleaned it
                removed += 1
        return removed

    def _block_files(self) -> list[Path]:
        return [path for path in self.folder.glob("*.kv") if BLOCK_NAME.fullmatch(path.name)]

    def _scan_bytes(self) -> int:
        total = 0
        for path in self._block_files():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def trim(self) -> None:
        """Delete the least recently used files until the folder fits ``max_bytes``."""
        files = []
        for path in self._block_files():
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
