"""Weights in 2 MB pages (``backend/huge_pages.py``): a large tensor advised before its first
touch is backed by huge pages (read back from ``/proc/self/smaps``); small ones and the switch
are left alone. (The loader's call is measured in docs/bench/cpu-choices.md, not tested here.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codeagent.backend import huge_pages

pytestmark = pytest.mark.skipif(
    not huge_pages.available(), reason="no transparent huge pages here (not Linux, or THP 'never')"
)


def huge_bytes_under(address: int) -> int:
    """AnonHugePages of the mapping holding ``address``, in bytes."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) > 4 and all(c in "0123456789abcdef-" for c in head[0]):
            low, high = (int(part, 16) for part in head[0].split("-"))
            inside = low <= address < high
        elif inside and head[0] == "AnonHugePages:":
            return int(head[1]) * 1024
    return 0


def test_a_large_tensor_advised_before_its_first_touch_gets_huge_pages():
    # 64 MB: above glibc's largest mmap threshold, so a fresh mapping, never reused heap memory
    tensor = torch.empty(64 << 20, dtype=torch.uint8)
    assert huge_pages.advise([tensor]) >= 60 << 20
    tensor.fill_(1)
    # the advised whole pages are a mapping of their own (the unaligned ends are not advised)
    assert huge_bytes_under(tensor.data_ptr() + (8 << 20)) >= 2 << 20


def test_small_tensors_and_the_switch_are_left_alone(monkeypatch):
    assert huge_pages.advise([torch.empty(1 << 20, dtype=torch.uint8)]) == 0
    monkeypatch.setenv(huge_pages.ENV, "0")
    assert not huge_pages.available()
    assert huge_pages.advise([torch.empty(16 << 20, dtype=torch.uint8)]) == 0
