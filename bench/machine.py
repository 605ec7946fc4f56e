"""What machine a CPU bench ran on, for its JSON: the CPU's model name, torch's threads and version."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def machine() -> str:
    """The CPU's model name (or architecture), torch's thread count and version, for a bench's JSON."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
