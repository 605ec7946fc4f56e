"""``codeagent plan``: what a model needs per rank and the smallest layout that fits, before a download.

The wiring of the memory planner (``backend/planning``): the model from ``--model`` (a
folder, an alias or a model id; the released configs ship with codeagent), the hardware
from ``--gpus`` / ``--gpu-mem`` (a CPU with ``--host-mem``, default this machine's memory,
when no GPU is named), the context and dtype, then a table of the layouts tried, the
largest rank of the chosen layout (or of the largest tried) in detail, and the verdict.
``--json`` prints the same as one object. Exit status: 0 when a layout fits, 1 when none
does, 2 for a mistake in the call (``CommandError``: a GPU spelling, an unknown model, a
context of 0 or past the model's window).

Imported when the command runs (``model_parsers.lazy``), so other commands never load torch.
"""

from __future__ import annotations

import json
from typing import Any

from codeagent.backend.distributed.layout import LayoutError
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.hardware import Hardware, HardwareError, cpu, detected_gpus, gpus, host_memory
from codeagent.backend.planning.plan import PREFILL_CHUNK, SEQUENCES, Candidate, Plan, make_plan
from codeagent.backend.planning.report import as_dict, flags, verdict
from codeagent.backend.planning.source import model_source
from codeagent.backend.planning.units import parse_quantity, per_token, size, tokens
from codeagent.backend.runtime import DTYPES, pick_dtype
from codeagent.tui.commands import CommandError
from codeagent.tui.inert import inert


def run(args: Any, config: Any) -> int:
    del config
    plan = _plan(args)
    if args.json:
        print(json.dumps(as_dict(plan), indent=2))
    else:
        print(inert(render(plan)))
    return 0 if plan.chosen else 1


def _plan(args: Any) -> Plan:
    host = _quantity(args.host_mem, "--host-mem") if args.host_mem else None
    context = _quantity(args.context, "--context") if args.context else None
    try:
        hardware = gpus(args.gpus, args.gpu_mem, host or host_memory()) or cpu(host or host_memory())
        source = model_source(args.model)
        dtype = DTYPES[pick_dtype(args.dtype, hardware.kind)]
        return make_plan(source, hardware, dtype, context, args.plan_tp, args.ep)
    except (PlanError, HardwareError, LayoutError) as err:
        raise CommandError(str(err)) from None


def _quantity(text: str, what: str) -> int:
    try:
        return parse_quantity(text, what)
    except ValueError as err:
        raise CommandError(str(err)) from None


def render(plan: Plan) -> str:
    """The plan as text: the model and hardware, the layouts tried, one rank in detail, the verdict."""
    dtype = str(plan.dtype).removeprefix("torch.")
    formats = _formats(plan.checkpoint)
    lines = [
        f"model     {plan.source.name} ({plan.source.architecture}), from {plan.source.origin}"
        + ("" if plan.source.folder else " (an estimate; --model DIR reads a checkpoint's exact bytes)"),
        f"hardware  {plan.hardware.describe()}; {dtype}; "
        f"context {tokens(plan.context)} tokens (window {tokens(plan.window)})",
        f"stored    {size(sum(plan.checkpoint.values()))} ({formats})"
        + (f", of which {size(plan.not_loaded)} (MTP) is not loaded" if plan.not_loaded else ""),
        "",
        *_table(plan),
        "",
        *_detail(plan),
        "",
        "verdict   " + verdict(plan),
        *_notes(plan.hardware),
    ]
    return "\n".join(lines)


def _formats(counts: dict[str, int]) -> str:
    return ", ".join(f"{fmt} {size(count)}" for fmt, count in sorted(counts.items(), key=lambda kv: -kv[1]))


def _table(plan: Plan) -> list[str]:
    at = f"at {tokens(plan.context)}"
    rows = [
        f"{'layout':<14}{'weights':>12}{'KV/token':>11}{'workspace':>11}{at:>15}{'memory':>11}  {'longest':>11}  fits"
    ]
    for c in plan.candidates:
        name = flags(c.layout) or "one device"
        if c.weights is None or c.kv is None:
            rows.append(f"{name:<14}  cannot split: {c.problem}")
            continue
        fits = "yes" if c.fits(plan.context) else "no"
        rows.append(
            f"{name:<14}{size(c.weights.total):>12}{per_token(c.kv.per_token):>11}{size(c.workspace.total):>11}"
            f"{size(c.needed(plan.context)):>15}{size(c.memory):>11}  {tokens(c.longest):>11}  {fits}"
        )
    return rows


def _detail(plan: Plan) -> list[str]:
    tried = [c for c in plan.candidates if c.weights is not None]
    shown: Candidate | None = plan.chosen or (max(tried, key=lambda c: c.layout.tp) if tried else None)
    if shown is None or shown.weights is None or shown.kv is None:
        return []
    tp = shown.layout.tp
    kv, ws = shown.kv, shown.workspace
    kinds = ", ".join(f"{kind} {per_token(count)}" for kind, count in kv.kinds.items())
    return [
        f"rank 0 of {tp} ({flags(shown.layout) or 'one device'}), the largest:",
        f"  reads      {size(sum(shown.weights.stored.values()))} from the checkpoint ({_formats(shown.weights.stored)})",
        f"  holds      {size(shown.weights.total)} of weights ({_formats(shown.weights.resident)})",
        f"  KV cache   {per_token(kv.per_token)} per token ({kinds}); {kv.rule}; "
        f"blocks of {kv.block_tokens} tokens ({size(kv.block_bytes)})",
        f"  workspace  {size(ws.total)}: activations {size(ws.activations)} (a {tokens(PREFILL_CHUNK)}-token prefill "
        f"chunk), logits {size(ws.logits)} ({SEQUENCES} sequences), reserve {size(ws.reserve)}"
        + (
            f", recurrent states {size(ws.states)} ({SEQUENCES} sequences' DeltaNet states)"
            if ws.states
            else ""
        ),
        f"  total      {size(shown.needed(plan.context))} of {size(shown.memory)} at {tokens(plan.context)} tokens; "
        f"the longest context that fits: {tokens(shown.longest)} tokens",
    ]


def _notes(hardware: Hardware) -> list[str]:
    if hardware.kind == "cuda":
        return ["note      the engine gives its KV pool 85 % of the memory left free after loading"]
    notes = [
        "note      on a CPU the engine's KV pool defaults to min(4 GiB, 30 % of available memory); "
        "serve --kv-cache-gb gives it more"
    ]
    here = detected_gpus()
    if here is not None:
        notes.append(
            f"note      this machine has {here.count} x {here.name}: --gpus or --gpu-mem plans for GPUs"
        )
    return notes
