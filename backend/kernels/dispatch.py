"""Which implementation a layer runs: a Triton kernel or its torch reference.

``CODEAGENT_KERNELS`` picks, read at every call so a test or a bench can switch it:

- ``auto`` (default): Triton for CUDA tensors when ``triton`` is installed, the torch
  reference otherwise (CPU, or a GPU machine without Triton);
- ``triton``: Triton everywhere; CPU tensors go through Triton's interpreter, which this
  module switches on (``TRITON_INTERPRET=1``) before the first kernel module is imported
  when the machine has no CUDA device, since Triton decides at decoration time;
- ``native``: the native CPU kernels (``kernels/native.c``, built on first use with the
  machine's C compiler) for CPU tensors, failing loudly where they cannot be built;
- ``torch``: the references everywhere.

In ``auto`` mode CPU tensors take the native kernels where they build, and the torch
references where they do not (``native_problem()`` says why; the benches report it).

Kernel modules are imported on first use only (``triton_ops()``), so importing a layer
never imports Triton and the CPU install does not need it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from importlib import metadata
from types import ModuleType

import torch

ENV = "CODEAGENT_KERNELS"
MODES = ("auto", "triton", "native", "torch")

_ops: ModuleType | None = None


class KernelUnavailable(RuntimeError):
    """Triton was asked for but cannot run here."""


def mode() -> str:
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.cache
def interpreter_problem() -> str | None:
    """Why Triton's CPU interpreter cannot run here, or None.

    Triton before 3.7 converts loop bounds with ``int(array)``, which numpy 2.4 refuses
    (triton-lang/triton#9171): every kernel with a runtime-bounded loop fails."""
    if not triton_installed():
        return "triton is not installed: pip install 'codeagent[kernels]'"
    try:
        triton_version, numpy_version = metadata.version("triton"), metadata.version("numpy")
    except metadata.PackageNotFoundError:
        return "Triton's interpreter needs numpy: pip install 'numpy<2.4'"

    def release(text: str) -> tuple[int, int]:
        major, minor = text.split(".")[:2]
        return int(major), int(minor)

    if release(triton_version) < (3, 7) and release(numpy_version) >= (2, 4):
        return (
            f"Triton {triton_version}'s CPU interpreter fails with numpy {numpy_version} "
            "(triton-lang/triton#9171): pip install 'numpy<2.4' or 'triton>=3.7'"
        )
    if "triton" in sys.modules and not interpreting():
        return "triton was imported before its interpreter was switched on: set TRITON_INTERPRET=1"
    return None


def use_triton(x: torch.Tensor) -> bool:
    """Whether the layer computing on ``x`` should run its Triton kernel."""
    chosen = mode()
    if chosen in ("torch", "native"):
        return False
    if chosen == "auto":
        return x.is_cuda and triton_installed()
    if not triton_installed():
        raise KernelUnavailable(
            f"{ENV}=triton, but triton is not installed: pip install 'codeagent[kernels]'"
        )
    if not x.is_cuda:
        if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
            raise KernelUnavailable(
                f"{ENV}=triton on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 before starting"
            )
        problem = interpreter_problem()
        if problem:
            raise KernelUnavailable(f"{ENV}=triton on CPU: {problem}")
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return True


def use_native(x: torch.Tensor) -> bool:
    """Whether the layer computing on CPU tensor ``x`` should run its native kernel (the
    caller still checks that the shapes fit: ``kernels.native.fits_*``)."""
    if x.device.type != "cpu":
        return False
    chosen = mode()
    if chosen == "auto":
        return native_problem() is None
    if chosen == "native":
        problem = native_problem()
        if problem:
            raise KernelUnavailable(f"{ENV}=native: {problem}")
        return True
    return False


def native_problem() -> str | None:
    """Why the native CPU kernels cannot run here (built on the first call), or None."""
    return native_ops().problem()


def native_ops() -> ModuleType:
    """``kernels.native``, imported on first use."""
    return importlib.import_module("codeagent.backend.kernels.native")


def kernels_in_use(device: str | torch.device = "cpu") -> str:
    """What a forward pass on ``device`` runs, in words, for a bench's record or a start-up line."""
    chosen = mode()
    if torch.device(device).type != "cpu":
        return "triton" if chosen != "torch" and triton_installed() else "torch reference"
    if chosen == "triton":
        return "triton (interpreter)"
    if chosen == "torch":
        return "torch reference"
    problem = native_problem()
    return (
        "native CPU kernels"
        if problem is None
        else f"torch reference (native kernels unavailable: {problem})"
    )


def triton_ops() -> ModuleType:
    """The kernels' entry points (``kernels.ops``), imported on first use."""
    global _ops
    if _ops is None:
        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
        _ops = importlib.import_module("codeagent.backend.kernels.ops")
    return _ops


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"
