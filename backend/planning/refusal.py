"""The checks before a load and before a download: does the model fit where it is going?

``before_load(folder, dtype, device, tp, ep)`` plans the checkpoint (its safetensors
headers: exact bytes) on the device it is about to be loaded on, as it is now
(``hardware.this_machine``: the CUDA device's free memory, taken for each of the GPUs, or
the host's available memory, shared by the ranks), in the layout asked, with room for a
``LOAD_CONTEXT``-token context; ``before_pull(model_id, config)`` plans a model from its
config.json on this machine's GPUs (any layout up to their number), else its host memory,
before a download. Each returns the verdict paragraph (``report.verdict``: the numbers, the
smallest layout that would fit, the remote alternative) when the model cannot fit, None when
it can. A model the planner cannot read (an architecture it has no rules for, a broken
header) or a layout it cannot plan here (more ranks than local GPUs: ``torchrun`` across
machines) is let through: the loader's and the launcher's own errors say what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from codeagent.backend.distributed.layout import LayoutError
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.hardware import cpu, detected_gpus, host_memory, this_machine
from codeagent.backend.planning.plan import make_plan
from codeagent.backend.planning.report import verdict
from codeagent.backend.planning.source import ModelSource, model_source

LOAD_CONTEXT = 4096  # tokens of KV cache a loaded model must leave room for


def before_load(folder: Path, dtype: torch.dtype, device: str, tp: int = 1, ep: bool = False) -> str | None:
    """Why ``folder`` cannot be loaded on ``device`` in ``dtype``, split ``tp`` ways (None when it
    fits). Each rank is planned on a GPU as free as this one, or on a ``tp``-th of the host."""
    try:
        source = model_source(str(folder))
        plan = make_plan(source, this_machine(device), dtype, _context(source), tp=tp, ep=ep)
    except (PlanError, LayoutError):
        return None
    if plan.chosen or all(c.problem for c in plan.candidates):
        return None  # fits; or a layout that cannot split the model, which the loader names
    return verdict(plan)


def before_pull(model_id: str, config: dict[str, Any]) -> str | None:
    """Why ``model_id`` (of this ``config.json``) cannot run on this machine (None when it can)."""
    source = ModelSource(model_id, config, None, "its config.json")
    hardware = detected_gpus() or cpu(host_memory())
    dtype = torch.bfloat16  # as the runtime loads it, on GPUs and CPUs alike
    try:
        plan = make_plan(source, hardware, dtype, _context(source))
    except (PlanError, LayoutError):
        return None
    return None if plan.chosen else verdict(plan)


def _context(source: ModelSource) -> int:
    window = source.config.get("max_position_embeddings") or LOAD_CONTEXT
    return min(LOAD_CONTEXT, int(window))
