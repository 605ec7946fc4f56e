"""``codeagent bench kernels --packed --tiny``: the harness of the packed-kernel bench on tiny shapes
(its timings mean nothing; the real shapes run by hand, docs/bench/cpu-choices.md)."""

from __future__ import annotations

import pytest

from codeagent.backend.kernels import native_packed
from codeagent.bench.kernels.packed import bench_packed, table

PROBLEM = native_packed.problem()


@pytest.mark.skipif(PROBLEM is not None, reason=f"packed kernels unavailable: {PROBLEM}")
def test_tiny_shapes_report_every_format_against_the_bandwidth():
    report = bench_packed((1,), with_torch=True, tiny=True, log=lambda _: None)
    assert report["read_GB_per_s"] > 0 and "meaningless" in report["note"]
    kernels = {(r["layer"], r["kernel"], r["format"]) for r in report["results"]}
    assert {
        ("linear", "linear_fp8", "fp8"),
        ("linear", "linear_fp4", "fp4"),
        ("linear", "native.linear", "bf16"),
    } <= kernels
    assert {
        ("moe", "moe_packed", "fp8"),
        ("moe", "moe_packed", "fp4"),
        ("moe", "native.moe", "bf16"),
    } <= kernels
    if native_packed.int8_built():  # FP4 on both routes
        assert {("linear", "linear_fp4 int8", "fp4"), ("moe", "moe_packed int8", "fp4")} <= kernels
    mb = {(r["layer"], r["format"]): r["MB_read"] for r in report["results"]}
    assert mb[("linear", "fp4")] < mb[("linear", "fp8")] < mb[("linear", "bf16")]
    assert all(r["ms"] > 0 and r["of_bandwidth"] >= 0 for r in report["results"])
    assert "linear_fp4" in table(report)
