"""GPU spellings, sizes as people write them, and this machine's memory."""

from __future__ import annotations

import pytest

from codeagent.backend.planning.hardware import HOST_ENV, HardwareError, gpus, host_available, host_memory
from codeagent.backend.planning.units import parse_quantity, size

MIB = 1 << 20


@pytest.mark.parametrize(
    ("spec", "memory", "count", "name"),
    [
        ("4xH100", 81559 * MIB, 4, "H100"),
        ("H100", 81559 * MIB, 1, "H100"),
        ("8x h200", 143771 * MIB, 8, "H200"),
        ("2xA100-40GB", 40960 * MIB, 2, "A100-40"),
        ("1xL40S", 46068 * MIB, 1, "L40S"),
    ],
)
def test_gpu_names(spec, memory, count, name):
    hardware = gpus(spec, None, 1)
    assert (hardware.kind, hardware.count, hardware.memory, hardware.name) == ("cuda", count, memory, name)


def test_memory_per_gpu_instead_of_a_name():
    assert gpus(None, "80G", 1).memory == 80 << 30
    assert gpus("4", "48G", 1).count == 4
    assert gpus(None, None, 1) is None  # no GPU option: a CPU plan


@pytest.mark.parametrize(
    ("spec", "gpu_mem", "error"),
    [
        ("4xQ100", None, "unknown GPU 'Q100'; known: H100"),
        ("4", None, "names no GPU"),
        ("4xH100", "80G", "either a GPU name"),
        ("0xH100", None, "at least 1"),
        ("four H100s", None, "expected COUNTxNAME"),
        (None, "0G", "must be positive"),
        (None, "80Q", "not a number"),
    ],
)
def test_bad_spellings_say_what_is_expected(spec, gpu_mem, error):
    with pytest.raises(HardwareError, match=error):
        gpus(spec, gpu_mem, 1)


def test_sizes_and_contexts_use_binary_suffixes():
    assert parse_quantity("128K", "--context") == 131072
    assert parse_quantity("1M", "--context") == 1 << 20
    assert parse_quantity("80GB", "--gpu-mem") == parse_quantity("80GiB", "x") == 80 << 30
    assert parse_quantity("1.5T", "--host-mem") == 3 << 39
    assert parse_quantity("4096", "--context") == 4096
    for bad in ("0", "-1K", "lots", "12Q"):
        with pytest.raises(ValueError, match="--context"):
            parse_quantity(bad, "--context")
    assert (size(0), size(768), size(3 << 20), size(5 << 30)) == ("0 B", "768 B", "3.0 MiB", "5.0 GiB")


def test_host_memory_is_measured_or_overridden(monkeypatch):
    monkeypatch.delenv(HOST_ENV, raising=False)
    assert 0 < host_available() <= host_memory()
    monkeypatch.setenv(HOST_ENV, "512G")
    assert host_memory() == host_available() == 512 << 30
    monkeypatch.setenv(HOST_ENV, "a lot")
    with pytest.raises(HardwareError, match=HOST_ENV):
        host_memory()
