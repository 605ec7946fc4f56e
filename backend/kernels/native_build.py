"""Building and loading the native CPU kernels: each C source (``native.c``, ``native_packed.c``,
``native_int6.c``, ``native_recurrent.c``) compiled on first use with the machine's C compiler
(``$CC``, else ``cc``/``gcc``) as ``-O3 -march=native -fopenmp``, into the cache folder
(``$XDG_CACHE_HOME/codeagent/kernels``), under a name keyed by the source, the local headers it
includes (``#include "native_common.h"``), the compiler, the flags and the CPU's feature flags,
so a cache shared between machines never hands one a binary built for another CPU. The file is
compiled beside its final name and renamed into place, so concurrent first uses race safely;
where the cache folder cannot be written, a per-user folder in the temporary directory is used.
Loaded with ``ctypes`` after PyTorch, a library shares PyTorch's OpenMP runtime (same soname)
and so its worker threads; ``ctypes`` releases the GIL during a call.

``Library`` is one kernel module's library, built on first use: ``problem()`` says why it cannot
be had (the layers then run their torch references), ``lib()`` hands it over or raises
``NativeError``. ``NativeCall`` is one entry point's call with its arguments bound: the kernel
wrappers build one and run it at once, a decode program
(``models/qwen3_moe/decode_program.py``) keeps them and runs them again every step. Limits: local headers are found by a plain scan of ``#include "..."`` lines
(one level: a header's own includes are not followed).
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from codeagent import xdg

FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11")
Signatures = dict[str, tuple[type | None, list[type]]]  # entry point: result, arguments
LOCAL_INCLUDE = re.compile(rb'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)

calls: collections.Counter[str] = collections.Counter()  # kernel name -> calls, for benches and tests
timings: dict[str, float] | None = None  # kernel name -> seconds in C, while a bench profiles (else off)


class NativeError(RuntimeError):
    """The native kernels could not be built or loaded, or a call failed."""


def cache_folder() -> Path:
    return xdg.folder("cache") / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


VERSION_FAILED = "failed: "


@functools.cache
def _version(compiler: str) -> str:
    """``compiler --version`` (part of every library's key), asked once a process."""
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return f"{VERSION_FAILED}{compiler} --version: {err}"


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def check(kernel: str, status: int, reasons: dict[int, str]) -> None:
    """Raise NativeError for a nonzero status, with its reason."""
    if status:
        raise NativeError(f"{kernel} failed: {reasons.get(status, status)}")


def local_headers(source: Path) -> list[Path]:
    """The headers ``source`` includes by a quoted name, found beside it."""
    return [source.parent / name.decode() for name in LOCAL_INCLUDE.findall(source.read_bytes())]


def build(source: Path, signatures: Signatures, flags: tuple[str, ...] = FLAGS) -> ctypes.CDLL | str:
    """``source`` built with ``flags`` (or found built) in the cache folder and loaded, its entry
    points typed from ``signatures`` (name: result, arguments); or why it cannot be had."""
    compiler = _compiler()
    if compiler is None:
        return "no C compiler found (set CC, or install gcc)"
    version = _version(compiler)
    if version.startswith(VERSION_FAILED):
        return version
    key = hashlib.sha256(
        b"\0".join(
            [
                source.read_bytes(),
                *(header.read_bytes() for header in local_headers(source)),
                version.encode(),
                " ".join(flags).encode(),
                cpu_flags().encode(),
                platform.machine().encode(),
            ]
        )
    ).hexdigest()[:20]
    problems: list[str] = []
    for folder in (cache_folder(), Path(tempfile.gettempdir()) / f"codeagent-kernels-{os.getuid()}"):
        target = folder / f"{source.stem}-{key}.so"
        if target.exists():
            break
        outcome = _compile(compiler, source, flags, folder, target)
        if outcome is None:
            break
        problems.append(outcome)
        # a compiler error is the source's or the compiler's, not the folder's: another folder won't help
        if outcome.startswith("compiling"):
            return outcome
    else:
        return "; ".join(problems)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as err:
        return f"loading {target} failed: {err}"
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


def _compile(compiler: str, source: Path, flags: tuple[str, ...], folder: Path, target: Path) -> str | None:
    """Build ``source`` at ``target`` (beside it first, then renamed into place); None or why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=target.name, suffix=".partial", dir=folder)
        os.close(fd)
        done = subprocess.run(
            [compiler, *flags, "-I", str(source.parent), "-o", partial, str(source), "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            Path(partial).unlink(missing_ok=True)
            return f"compiling {source.name} failed: {done.stderr.strip()[-500:]}"
        os.replace(partial, target)
    except (OSError, subprocess.SubprocessError) as err:
        return f"building the native kernels in {folder} failed: {err}"
    return None


class Library:
    """One kernel source's library, built (or found built) on first use."""

    def __init__(self, source: Path, signatures: Signatures, flags: tuple[str, ...] = FLAGS) -> None:
        self.source, self.signatures, self.flags = source, signatures, flags

    @functools.cached_property
    def loaded(self) -> ctypes.CDLL | str:
        return build(self.source, self.signatures, self.flags)

    def problem(self) -> str | None:
        """Why the library is unavailable here, or None (builds it on first call)."""
        return self.loaded if isinstance(self.loaded, str) else None

    def lib(self) -> ctypes.CDLL:
        if isinstance(self.loaded, str):
            raise NativeError(self.loaded)
        return self.loaded


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class NativeCall:
    """One native kernel call with its arguments bound (sizes, flags and raw pointers). ``keep``
    holds the tensors the pointers point into, so the call can run again as long as it lives,
    reading and writing the same memory each time; ``reasons`` (for entry points that return a
    status) says what each nonzero status means."""

    name: str  # the kernel's name in ``calls``
    function: Callable[..., Any]  # a typed entry point of a loaded library
    args: tuple[Any, ...]
    reasons: Mapping[int, str] | None = None
    keep: tuple[Any, ...] = ()

    def run(self) -> None:
        calls[self.name] += 1
        if timings is None:
            status = self.function(*self.args)
        else:
            started = time.perf_counter()
            status = self.function(*self.args)
            timings[self.name] = timings.get(self.name, 0.0) + time.perf_counter() - started
        if self.reasons is not None and status:
            raise NativeError(f"{self.function.__name__} failed: {self.reasons.get(status, status)}")
