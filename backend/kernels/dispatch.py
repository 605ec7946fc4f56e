"""Which implementations a model runs: Triton kernels, the native CPU kernels or the torch
references, chosen once, when the model is built.

``choose(device)`` returns a ``Kernels``: which kernel families run (the modules themselves,
so a layer calls ``kernels.triton.rms_norm(...)`` with no lookup) and, in words, what that
means. The model keeps it (``model.kernels``) and hands it to its layers on every forward;
nothing on the hot path reads the environment or imports anything. A layer given no
``Kernels`` runs its torch reference (``REFERENCE``), which is what the kernels are tested
against.

``CODEAGENT_KERNELS`` says what to choose (read by ``choose`` when no mode is passed):

- ``auto`` (default): Triton on CUDA when ``triton`` is installed; on CPU the native kernels
  (``kernels/native.c``, ``native_packed.c`` for FP8 / FP4 weights, ``native_recurrent.c``
  for linear attention and ``native_v4.c`` / ``native_v4_attention.c`` for DeepSeek-V4's decode
  glue, built on first use with the machine's C compiler) where they build, the
  torch references where they do not (``native_problem()`` says why); the references
  on a GPU machine without Triton;
- ``triton``: Triton everywhere; on CPU through Triton's interpreter, which ``choose``
  switches on (``TRITON_INTERPRET=1``, the one place that sets it) before the kernel modules
  are first imported, since Triton decides at decoration time;
- ``native``: the native kernels on CPU, failing loudly (``KernelUnavailable``) where they
  cannot be built;
- ``torch``: the references everywhere.

``CODEAGENT_FP4_INT8`` (``auto``, default, or ``off``), read once when the native kernels are
first chosen: where the build has AVX512-VNNI and -VBMI, the FP4 products at decode sizes
quantize their activations to int8 per 32 inputs and multiply integers
(``native_packed.int8``), as INT6 products always do (``native_int6``: vectorised with
AVX512-VNNI, plain C elsewhere); ``off`` keeps both on their float routes (the references the
int8 ones are measured against, and the ones whose results match the prefill's decoded-weight
products).

Devices other than CUDA and the CPU (``meta``, ``mps``) always get the references.

Kernel modules are imported by ``choose`` only, so importing a layer imports neither Triton
nor any kernel, and the CPU install does not need Triton. Limits: one choice per model (a
model whose tensors span devices is not supported).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import torch

ENV = "CODEAGENT_KERNELS"
MODES = ("auto", "triton", "native", "torch")
TRITON, NATIVE, TORCH = "triton", "native", "torch"


class KernelUnavailable(RuntimeError):
    """The kernels asked for cannot run here."""


@dataclass(frozen=True, slots=True)
class Kernels:
    """The kernel families a model runs; None: the layers' torch references instead."""

    name: str  # in words, for a start-up line or a bench's record
    triton: ModuleType | None = None  # ``kernels.ops``: every layer with a Triton kernel runs it
    native: ModuleType | None = None  # ``kernels.native``: the CPU kernels, where shapes fit them
    packed: ModuleType | None = None  # ``kernels.native_packed``: the CPU kernels over FP8 / FP4 weights
    recurrent: ModuleType | None = None  # ``kernels.native_recurrent``: linear attention's CPU kernels
    v4: ModuleType | None = None  # ``kernels.native_v4``: DeepSeek-V4's decode glue on CPU


REFERENCE = Kernels("torch reference")


def mode() -> str:
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


def choose(device: str | torch.device = "cpu", chosen: str | None = None) -> Kernels:
    """The kernels a model on ``device`` runs under mode ``chosen`` (default: ``CODEAGENT_KERNELS``).
    Raises KernelUnavailable when that mode cannot run here."""
    family, words = _plan(torch.device(device), chosen or mode())
    if family == TRITON:
        return Kernels(words, triton=_load_triton())
    if family == NATIVE:
        return _native_kernels(words)
    return Kernels(words)


def _native_kernels(words: str) -> Kernels:
    """The native kernels, with the families beside ``native.c`` that build here (the layers run
    their references for a missing one, and the words say why it is missing)."""
    packed, recurrent, v4 = packed_ops(), recurrent_ops(), v4_ops()
    problems = {
        "packed-weight": packed.problem(),
        "recurrent": recurrent.problem(),
        "DeepSeek-V4": v4.problem(),
    }
    if not problems["packed-weight"]:
        problems["INT6"] = packed.native_int6.problem()
    notes = [f"{what} kernels unavailable: {why}" for what, why in problems.items() if why]
    if not problems["packed-weight"] and packed.int8():  # reads CODEAGENT_FP4_INT8 now, once
        notes.append("FP4 products with int8 activations")
    return Kernels(
        f"{words} ({'; '.join(notes)})" if notes else words,
        native=native_ops(),
        packed=None if problems["packed-weight"] else packed,
        recurrent=None if problems["recurrent"] else recurrent,
        v4=None if problems["DeepSeek-V4"] else v4,
    )


def kernels_in_use(device: str | torch.device = "cpu") -> str:
    """What a forward pass on ``device`` runs, in words, for a bench's record or a start-up line."""
    try:
        return _plan(torch.device(device), mode())[1]
    except KernelUnavailable as err:
        return f"unavailable: {err}"


def _plan(device: torch.device, chosen: str) -> tuple[str, str]:
    """(family, words) for ``chosen`` on ``device``; imports no kernel module."""
    if chosen not in MODES:
        raise ValueError(f"{ENV}={chosen!r}: expected one of {', '.join(MODES)}")
    if chosen == TORCH:
        return TORCH, REFERENCE.name
    if device.type not in ("cpu", "cuda"):  # meta (shapes only), or a device no kernel here targets
        return TORCH, REFERENCE.name
    if device.type == "cuda":
        if chosen == TRITON and not triton_installed():
            raise KernelUnavailable(
                f"{ENV}=triton, but triton is not installed: pip install 'codeagent[kernels]'"
            )
        if chosen != NATIVE and triton_installed():
            return TRITON, "triton"
        return TORCH, REFERENCE.name
    if chosen == TRITON:
        _check_interpreter()
        return TRITON, "triton (interpreter)"
    problem = native_problem()
    if problem is None:
        return NATIVE, "native CPU kernels"
    if chosen == NATIVE:
        raise KernelUnavailable(f"{ENV}=native: {problem}")
    return TORCH, f"{REFERENCE.name} (native kernels unavailable: {problem})"


def _check_interpreter() -> None:
    if not triton_installed():
        raise KernelUnavailable(
            f"{ENV}=triton, but triton is not installed: pip install 'codeagent[kernels]'"
        )
    if torch.cuda.is_available() and not interpreting():
        raise KernelUnavailable(
            f"{ENV}=triton on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 before starting"
        )
    problem = interpreter_problem()
    if problem:
        raise KernelUnavailable(f"{ENV}=triton on CPU: {problem}")


def _load_triton() -> ModuleType:
    """``kernels.ops``; without a CUDA device, Triton's interpreter is switched on first."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return importlib.import_module("codeagent.backend.kernels.ops")


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


def native_problem() -> str | None:
    """Why the native CPU kernels cannot run here (built on the first call), or None."""
    return native_ops().problem()


def native_ops() -> ModuleType:
    """``kernels.native``, imported on first use."""
    return importlib.import_module("codeagent.backend.kernels.native")


def packed_ops() -> ModuleType:
    """``kernels.native_packed`` (the native kernels over packed weights), imported on first use."""
    return importlib.import_module("codeagent.backend.kernels.native_packed")


def recurrent_ops() -> ModuleType:
    """``kernels.native_recurrent`` (linear attention's native kernels), imported on first use."""
    return importlib.import_module("codeagent.backend.kernels.native_recurrent")


def v4_ops() -> ModuleType:
    """``kernels.native_v4`` (DeepSeek-V4's decode-glue native kernels), imported on first use."""
    return importlib.import_module("codeagent.backend.kernels.native_v4")


def interpreting() -> bool:
    """Whether Triton's interpreter is switched on (the kernels read ``common.INTERPRETING``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"
