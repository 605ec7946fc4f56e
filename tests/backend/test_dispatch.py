"""The kernel choice: made once when a model is built, kept on it, never read again per call."""

from __future__ import annotations

import pytest

from codeagent.backend.kernels.dispatch import REFERENCE, choose
from codeagent.backend.loader import load_model


def test_a_model_keeps_the_kernels_it_was_built_with(qwen3_moe_dir, monkeypatch):
    monkeypatch.setenv("CODEAGENT_KERNELS", "torch")
    model = load_model(qwen3_moe_dir).model
    assert (
        model.kernels.name == REFERENCE.name and model.kernels.triton is None and model.kernels.native is None
    )
    monkeypatch.setenv("CODEAGENT_KERNELS", "triton")  # read when a model is built, not after
    assert model.kernels.triton is None


def test_devices_without_kernels_get_the_references_and_unknown_modes_are_refused():
    assert choose("meta", "triton") == REFERENCE
    assert choose("cpu", "torch") == REFERENCE
    with pytest.raises(ValueError, match="expected one of auto, triton, native, torch"):
        choose("cpu", "fast")
