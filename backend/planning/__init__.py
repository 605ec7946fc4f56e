"""The memory planner: what a model needs, per rank of a parallel layout, before anything is loaded.

From ``config.json`` alone (or a checkpoint's safetensors headers, for exact bytes) it
says what each rank holds and whether that fits the hardware: the weights by format
(``inventory.py``), the KV cache per token (``kv.py``, from the model's own
``cache_streams``), the activations and runtime reserve, and the layouts to try
(``plan.py``), against GPUs by name or size or a CPU's memory (``hardware.py``). The
released configurations of the models codeagent is built for ship in ``configs/``
(``source.py``), so it answers before a download. ``codeagent plan`` prints it;
``runtime.load`` and ``codeagent models pull`` refuse, with its numbers, what cannot fit.
"""

from __future__ import annotations


class PlanError(ValueError):
    """A model or a request the planner cannot plan (unknown model, bad context, no rule)."""
