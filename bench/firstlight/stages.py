"""The stages of ``codeagent bench first-light``: what each runs, where it writes, its time budget.

``plan(out, tiny)`` lists them in order; each is a ``python -m`` command line. Budgets
(seconds, 530 in all) are what a stage is promised; one may run longer on time that
earlier stages left unused (``run.py``). ``--tiny`` keeps the commands and shrinks the
sizes: tiny configurations on the CPU, a handful of kernel tests, the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GPU = ("--random-weights",)
TINY_GPU = ("--random-weights", "--tiny", "--device", "cpu")


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    output: Path  # the JSON file it writes
    module: str  # run as ``python -m module *args``
    args: tuple[str, ...]
    budget_s: float
    needs: str | None = None  # a module that must be importable, else the stage is not run
    env: dict[str, str] = field(default_factory=dict)


def plan(out: Path, tiny: bool) -> list[Stage]:
    """The stages in the order they run, writing under ``out``."""
    gpu = TINY_GPU if tiny else GPU

    def bench(name: str, scenario: str, args: tuple[str, ...], budget: float, needs: str | None = None):
        output = out / f"{name}.json"
        return Stage(
            name, output, "codeagent.bench", (scenario, *args, "--output", str(output)), budget, needs
        )

    tests = (
        (
            "tests/kernels/test_cuda_shapes.py",
            "tests/kernels/test_norm_rotary.py",
            "-k",
            "rms_norm or qwen3_coder_moe",
        )
        if tiny
        else ("tests/kernels",)
    )
    kernels = (
        ("--tiny", "--models", "qwen3-coder-30b-a3b", "--tokens", "1", "--contexts", "64", "--no-torch",
         "--only", "fused_moe,paged_attention_decode")
        if tiny
        else ("--tokens", "1,8,64", "--contexts", "4096,32768")
    )  # fmt: skip
    coder = ("--config", "qwen3-coder-30b-a3b", *gpu)
    sizes = (
        ("--batches", "1,2", "--contexts", "16", "--prefills", "32", "--prefix", "96", "--follow-up", "8")
        if tiny
        else ("--batches", "1,8,32", "--contexts", "1024,32768", "--prefills", "8192", "--prefix", "100000",
              "--follow-up", "500")
    )  # fmt: skip
    one = ("--scenarios", "decode", "--batches", "1", "--contexts", "16" if tiny else "1024")
    cut = ("--layers", "fit", "--no-reference", "--scenarios", "decode,prefill", "--batches", "1,8" if not tiny else "1",
           "--contexts", "16" if tiny else "1024,32768", "--prefills", "32" if tiny else "8192")  # fmt: skip
    output = out / "kernel-tests.json"
    return [
        Stage(
            "kernel-tests",
            output,
            "codeagent.bench.firstlight.kernel_tests",
            (
                "--output",
                str(output),
                "--",
                *tests,
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "pytest_timeout",
                "--timeout",
                "60",
            ),
            90,
            needs="pytest_timeout",
            env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # the plugins a machine has need not import
        ),
        bench("kernels", "kernels", kernels, 60),
        bench("gpu-qwen3-coder", "gpu", (*coder, *sizes, "--no-reference"), 180),
        bench("gpu-vs-transformers", "gpu", (*coder, *one), 90, needs="transformers"),
        bench("gpu-deepseek-v4-flash", "gpu", ("--config", "deepseek-v4-flash", *gpu, *cut), 60),
        bench("gpu-qwen3-next", "gpu", ("--config", "qwen3-next-80b-a3b", *gpu, *cut), 50),
    ]
