"""A plan in words (the verdict paragraph a refusal or ``codeagent plan`` prints) and as data
(``--json``).

``verdict`` is one paragraph: the smallest layout that fits and its numbers per rank, or
why none does (the largest layout tried, its weights, workspace and KV cache against the
device's memory) with the smallest layout of more GPUs that would (``plan.suggest``) and the
remote-endpoint alternative. ``as_dict`` holds every number in bytes and tokens.
"""

from __future__ import annotations

from typing import Any

from codeagent.backend.distributed.layout import Layout
from codeagent.backend.planning.plan import GPUS_PER_NODE, MAX_TP, Candidate, Plan, suggest
from codeagent.backend.planning.units import per_token, size, tokens

REMOTE = (
    "or serve it with vLLM or SGLang on hardware that holds it and point codeagent at that "
    "endpoint with --model remote:NAME"
)


def flags(layout: Layout) -> str:
    """The command-line flags of a layout (``--tp 4 --ep``); empty for one device."""
    return f"--tp {layout.tp}" + (" --ep" if layout.ep else "") if layout.tp > 1 else ""


def _with(layout: Layout, kind: str) -> str:
    if layout.tp > 1:
        return f"with {flags(layout)}{_nodes(layout.tp)}"
    return "on one GPU" if kind == "cuda" else "in one process"


def _nodes(tp: int) -> str:
    return f" ({-(-tp // GPUS_PER_NODE)} nodes of {GPUS_PER_NODE})" if tp > GPUS_PER_NODE else ""


def _numbers(candidate: Candidate, context: int) -> str:
    assert candidate.weights is not None and candidate.kv is not None
    shown = sorted(candidate.weights.resident.items(), key=lambda item: -item[1])
    floor = candidate.weights.total / 100  # formats under 1 % of the weights are left out
    formats = ", ".join(f"{fmt} {size(count)}" for fmt, count in shown if count >= floor)
    states = candidate.workspace.states
    held = f", {size(states)} of it the running sequences' recurrent states" if states else ""
    return (
        f"{size(candidate.weights.total)} of weights ({formats}), {size(candidate.workspace.total)} of workspace{held} "
        f"and {per_token(candidate.kv.per_token)} of KV cache per token "
        f"({size(candidate.kv.bytes_for(context))} at {tokens(context)} tokens): "
        f"{size(candidate.needed(context))} of {size(candidate.memory)}"
    )


def verdict(plan: Plan) -> str:
    """The plan's answer in one paragraph, with the numbers."""
    name, where, kind = plan.source.name, plan.hardware.describe(), plan.hardware.kind
    chosen = plan.chosen
    if chosen is not None:
        window = " (the model's window)" if chosen.longest >= plan.window else ""
        return (
            f"{name} fits {where} {_with(chosen.layout, kind)}: "
            f"{'each GPU needs' if kind == 'cuda' else 'it needs'} {_numbers(chosen, plan.context)}. "
            f"The longest context that fits is {tokens(chosen.longest)} tokens{window}."
        )
    tried = [c for c in plan.candidates if c.problem is None]
    if tried:
        largest = max(tried, key=lambda c: (c.layout.tp, not c.layout.ep))
        short = largest.needed(plan.context) - largest.memory
        text = (
            f"{name} does not fit {where} at {tokens(plan.context)} tokens: {_with(largest.layout, kind)} "
            f"it needs {_numbers(largest, plan.context)}, {size(short)} short."
        )
    else:
        problems = "; ".join(f"{flags(c.layout) or 'one device'}: {c.problem}" for c in plan.candidates)
        text = f"{name} cannot be split across {where} ({problems})."
    return f"{text} {_elsewhere(plan)}"


def _elsewhere(plan: Plan) -> str:
    found = suggest(plan)
    if found is None:
        return f"Not even {MAX_TP} GPUs would hold it; {REMOTE}."
    hardware, candidate = found
    dtype = "" if plan.hardware.kind == "cuda" else " in bfloat16"
    layout = f" with {flags(candidate.layout)}" if candidate.layout.tp > 1 else ""
    return (
        f"It would fit {hardware.count} x {hardware.name}{_nodes(hardware.count)}{dtype}{layout} "
        f"({size(candidate.needed(plan.context))} per GPU); {REMOTE}."
    )


def as_dict(plan: Plan) -> dict[str, Any]:
    chosen = plan.chosen
    hw = plan.hardware
    return {
        "model": {
            "name": plan.source.name,
            "architecture": plan.source.architecture,
            "source": plan.source.origin,
        },
        "hardware": {
            "kind": hw.kind,
            "count": hw.count,
            "name": hw.name,
            "memory_bytes": hw.memory,
            "host_bytes": hw.host,
        },
        "dtype": str(plan.dtype).removeprefix("torch."),
        "context_tokens": plan.context,
        "window_tokens": plan.window,
        "checkpoint": {
            "exact": plan.source.folder is not None,
            "bytes_by_format": plan.checkpoint,
            "total_bytes": sum(plan.checkpoint.values()),
            "not_loaded_bytes": plan.not_loaded,
        },
        "layouts": [_candidate(c, plan.context) for c in plan.candidates],
        "verdict": {
            "fits": chosen is not None,
            "tp": chosen.layout.tp if chosen else None,
            "ep": chosen.layout.ep if chosen else None,
            "message": verdict(plan),
        },
    }


def _candidate(c: Candidate, context: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tp": c.layout.tp,
        "ep": c.layout.ep,
        "problem": c.problem,
        "fits": c.fits(context),
    }
    if c.weights is None or c.kv is None:
        return out
    out["per_rank"] = {
        "weights": {
            "stored_bytes_by_format": c.weights.stored,
            "resident_bytes_by_format": c.weights.resident,
            "total_bytes": c.weights.total,
        },
        "kv": {
            "bytes_per_token": c.kv.per_token,
            "block_tokens": c.kv.block_tokens,
            "block_bytes": c.kv.block_bytes,
            "bytes_per_token_by_kind": c.kv.kinds,
            "rule": c.kv.rule,
            "bytes_at_context": c.kv.bytes_for(context),
        },
        "workspace": {
            "activations_bytes": c.workspace.activations,
            "logits_bytes": c.workspace.logits,
            "reserve_bytes": c.workspace.reserve,
            "recurrent_state_bytes": c.workspace.states,
            "total_bytes": c.workspace.total,
        },
        "needed_bytes": c.needed(context),
        "memory_bytes": c.memory,
        "longest_context_tokens": c.longest,
    }
    return out
