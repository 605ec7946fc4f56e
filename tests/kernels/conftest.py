"""Kernel tests run Triton's interpreter on CPU (tiny shapes) or real kernels on CUDA.

The interpreter must be chosen before any kernel module is imported (Triton decides at
decoration time), hence the environment is set here, at collection. References are the
layers' torch functions (what a layer runs when given no kernels); ``CODEAGENT_KERNELS=torch``
is set while a test runs, so a model a test builds runs the references unless the test
chooses its kernels, and kernels are called directly.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="triton is not installed: pip install 'codeagent[kernels]'")

from codeagent.backend.kernels.dispatch import interpreter_problem

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PROBLEM = interpreter_problem() if DEVICE == "cpu" else None
QUIET = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "without_interpreter: a kernels test that runs no kernel on CPU")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(QUIET)
            if PROBLEM and item.get_closest_marker("without_interpreter") is None:
                item.add_marker(pytest.mark.skip(reason=PROBLEM))


@pytest.fixture(autouse=True)
def references_are_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEAGENT_KERNELS", "torch")


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture
def randn():
    """randn(*shape, dtype=, seed=) on the test device, reproducible on any device."""

    def make(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(*shape, generator=generator).to(device=DEVICE, dtype=dtype)

    return make
