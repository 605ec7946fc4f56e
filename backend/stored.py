"""Checkpoint tensors read on demand, whole or a slice, with plain file reads.

A rank of a split model needs a slice of most tensors: some rows of a column-split weight,
some columns of a row-split one, a few experts of a stacked tensor. ``StoredTensor`` knows
where a tensor's bytes sit in its safetensors file (from the JSON header) and reads only
the ranges a slice needs with ``os.pread``, straight into the result: no memory map, so the
process's resident memory holds what it kept and nothing of the file it did not (a mapped
file's touched pages count toward it; a column slice touches every page of the tensor).

``read(dim, start, stop)`` narrows one dimension; the rows of a narrowed inner dimension are
read one contiguous run at a time. ``full()`` reads everything. ``shape`` and ``dtype`` come
from the header, so a model can check shapes and decide what to read before reading.

Limits: safetensors only (the format the loader accepts); one dimension narrowed per read
(a model that needs two, such as an expert range and a width share, reads per expert).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E8M0": torch.float8_e8m0fnu,
}


class StoredError(ValueError):
    """A safetensors file whose header cannot be used."""


@dataclass(frozen=True, slots=True)
class StoredTensor:
    path: Path
    offset: int  # of the tensor's first byte in the file
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def itemsize(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize

    def full(self) -> torch.Tensor:
        return self.read(0, 0, self.shape[0]) if self.shape else self._bytes(self.offset, self.nbytes, ())

    def read(self, dim: int, start: int, stop: int) -> torch.Tensor:
        """The tensor narrowed to ``[start, stop)`` along ``dim``."""
        if not 0 <= dim < len(self.shape) or not 0 <= start <= stop <= self.shape[dim]:
            raise StoredError(f"{self.path.name}: cannot take [{start}:{stop}] of dim {dim} of {self.shape}")
        shape = (*self.shape[:dim], stop - start, *self.shape[dim + 1 :])
        inner = math.prod(self.shape[dim + 1 :]) * self.itemsize  # bytes of one step along dim
        outer = math.prod(self.shape[:dim])
        run = (stop - start) * inner
        out = torch.empty(shape, dtype=self.dtype)
        flat = out.reshape(-1).view(torch.uint8)
        with self.path.open("rb", buffering=0) as handle:
            fd = handle.fileno()
            for index in range(outer):
                at = self.offset + index * self.shape[dim] * inner + start * inner
                _pread_into(fd, flat[index * run : (index + 1) * run], at)
        return out

    def _bytes(self, at: int, size: int, shape: tuple[int, ...]) -> torch.Tensor:
        out = torch.empty(shape, dtype=self.dtype)
        with self.path.open("rb", buffering=0) as handle:
            _pread_into(handle.fileno(), out.reshape(-1).view(torch.uint8), at)
        return out


def _pread_into(fd: int, target: torch.Tensor, at: int) -> None:
    view = memoryview(target.numpy()).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], at + done)
        if got <= 0:
            raise StoredError(f"the file ends before byte {at + done}: truncated checkpoint")
        done += got


def stored_tensors(path: Path) -> Iterator[tuple[str, StoredTensor]]:
    """Every tensor of one safetensors file, in the order of the file, without reading data."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 2**20:
                raise StoredError(f"{path}: header of {length} bytes is not a safetensors header")
            header = json.loads(handle.read(length))
        size = path.stat().st_size
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoredError(f"{path} is corrupt or not a safetensors file: {err}") from err
    base = 8 + length
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    for key, entry in sorted(entries, key=lambda item: item[1]["data_offsets"][0]):
        if entry.get("dtype") not in DTYPES:
            raise StoredError(f"{path}: tensor {key} has unsupported dtype {entry.get('dtype')!r}")
        begin, end = entry["data_offsets"]
        tensor = StoredTensor(path, base + begin, tuple(entry["shape"]), DTYPES[entry["dtype"]])
        if end - begin != tensor.nbytes or base + end > size:
            raise StoredError(f"{path}: tensor {key} does not fit its byte range (truncated file?)")
        yield key, tensor
