"""What a model is planned against: GPUs by name or size, a CPU's memory, or this machine.

``Hardware`` is a number of identical devices and the memory of each (plus the host's).
``--gpus`` names them (``4xH100``, ``8xH200``, ``H100``; ``4`` with ``--gpu-mem``);
``--gpu-mem 80G`` gives the memory per GPU instead of a name. A GPU name stands for the
memory its driver reports (``nvidia-smi``'s MiB; an "80 GB" H100 is 81,559 MiB = 79.6 GiB),
so a plan made from the name matches the card; the CUDA context, fragmentation and
NCCL buffers are not subtracted here but in the plan's runtime reserve.

This machine (``this_machine``, for the refusal at load) is measured, not named: on CUDA
the free memory of the current device (``torch.cuda.mem_get_info``), on the CPU the
available memory (``MemAvailable``), each bounded by the cgroup's memory limit where one
is set. ``CODEAGENT_HOST_MEMORY`` (e.g. ``8G``) overrides the host's memory, total and
available alike: a container whose ``/proc/meminfo`` shows the host's memory, or a check
of what a smaller machine would do.

Limits: every GPU of a plan is the same card; a GPU's memory is taken whole (MIG slices
and memory used by other processes are seen only by ``this_machine``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from codeagent.backend.planning.units import parse_quantity, size

MIB = 1 << 20
GPUS: dict[str, int] = {  # name -> memory per GPU as the driver reports it
    "H100": 81559 * MIB,
    "H100-NVL": 95830 * MIB,
    "H200": 143771 * MIB,
    "GH200": 97871 * MIB,
    "B200": 183359 * MIB,
    "A100": 81920 * MIB,
    "A100-80": 81920 * MIB,
    "A100-40": 40960 * MIB,
    "L40S": 46068 * MIB,
    "L40": 46068 * MIB,
    "L4": 23034 * MIB,
    "A10": 23028 * MIB,
    "RTX4090": 24564 * MIB,
    "MI300X": 196592 * MIB,
}
HOST_ENV = "CODEAGENT_HOST_MEMORY"
NAMED = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?([A-Za-z][\w.-]*)\s*$")  # 4xH100, H100
COUNT = re.compile(r"^\s*(\d+)\s*$")  # 4 (with --gpu-mem)


class HardwareError(ValueError):
    """A GPU spelling or memory size that cannot be planned against."""


@dataclass(frozen=True, slots=True)
class Hardware:
    kind: str  # "cuda" or "cpu"
    count: int  # devices: GPUs, or 1 for the CPU
    memory: int  # bytes per device
    name: str  # "H100", "80.0 GiB GPU", "CPU"
    host: int  # host memory in bytes
    named: bool = True  # a card's name, not only its memory (--gpu-mem)

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"CPU with {size(self.memory)}"
        return f"{self.count} x {self.name}" + (f" ({size(self.memory)} each)" if self.named else "")

    def with_count(self, count: int) -> Hardware:
        return Hardware(self.kind, count, self.memory, self.name, self.host, self.named)


def gpu_names() -> str:
    return ", ".join(GPUS)


def _gpu_memory(name: str) -> tuple[str, int]:
    wanted = name.upper().removesuffix("GB").replace("_", "-").replace("-", "")
    for known, memory in GPUS.items():
        if known.replace("-", "") == wanted:
            return known, memory
    raise HardwareError(f"unknown GPU {name!r}; known: {gpu_names()} (or give --gpu-mem, e.g. 80G)")


def gpus(spec: str | None, gpu_mem: str | None, host: int) -> Hardware | None:
    """The GPUs ``--gpus`` / ``--gpu-mem`` describe; None when neither is given (a CPU plan)."""
    if spec is None and gpu_mem is None:
        return None
    named, counted = NAMED.match(spec or ""), COUNT.match(spec or "")
    if spec is not None and named is None and counted is None:
        raise HardwareError(
            f"--gpus {spec!r}: expected COUNTxNAME (4xH100), NAME (H100) or COUNT with --gpu-mem"
        )
    count = int((named or counted).group(1) or 1) if spec is not None else 1  # type: ignore[union-attr]
    if count < 1:
        raise HardwareError(f"--gpus {spec!r}: the count must be at least 1")
    if named is not None and gpu_mem is not None:
        raise HardwareError("give either a GPU name in --gpus or --gpu-mem, not both")
    if named is not None:
        name, memory = _gpu_memory(named.group(2))
        return Hardware("cuda", count, memory, name, host)
    if gpu_mem is None:
        raise HardwareError(f"--gpus {spec!r} names no GPU; add its name (4xH100) or --gpu-mem 80G")
    try:
        memory = parse_quantity(gpu_mem, "--gpu-mem")
    except ValueError as err:
        raise HardwareError(str(err)) from None
    return Hardware("cuda", count, memory, f"{size(memory)} GPU", host, named=False)


def cpu(host: int) -> Hardware:
    return Hardware("cpu", 1, host, "CPU", host)


def host_memory() -> int:
    """This machine's memory: ``CODEAGENT_HOST_MEMORY``, else ``MemTotal`` within the cgroup's limit."""
    return _override() or min(_meminfo("MemTotal"), _cgroup_limit())


def host_available() -> int:
    """Memory a new model may take now: ``CODEAGENT_HOST_MEMORY``, else ``MemAvailable`` (cgroup-bounded)."""
    return _override() or min(_meminfo("MemAvailable"), _cgroup_limit())


def this_machine(device: str) -> Hardware:
    """The device a model is about to be loaded on, with the memory it has free now (on CUDA,
    every GPU here counted as free as that one)."""
    host = host_available()
    if torch.device(device).type != "cuda":
        return cpu(host)
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    free, _ = torch.cuda.mem_get_info(index)
    return Hardware("cuda", torch.cuda.device_count(), free, torch.cuda.get_device_name(index), host)


def detected_gpus() -> Hardware | None:
    """The CUDA GPUs torch sees here (their total memory), or None."""
    if not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    total = torch.cuda.get_device_properties(0).total_memory
    return Hardware("cuda", count, total, torch.cuda.get_device_name(0), host_memory())


def _override() -> int | None:
    text = os.environ.get(HOST_ENV, "").strip()
    if not text:
        return None
    try:
        return parse_quantity(text, HOST_ENV)
    except ValueError as err:
        raise HardwareError(str(err)) from None


def _meminfo(field: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_PHYS_PAGES" if field == "MemTotal" else "SC_AVPHYS_PAGES")
    return pages * os.sysconf("SC_PAGE_SIZE")


def _cgroup_limit() -> int:
    """The memory limit of this process's cgroup (v2, then v1); a huge number when unlimited."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return 1 << 62
