"""The first run with no model configured: the default embedded model, said before it is fetched.

With no ``--model``, no ``model`` in the config and no ``CODEAGENT_MODEL``, ``fix``, ``eval``
and the terminal UI use the default model (``qwen3-coder-30b-a3b``). When it is not in the
local Hugging Face cache, ``fetch_default``:

- works out what it takes (``needs``), before any download: its size as released and the
  memory it needs here in bfloat16 (the runtime's default) with a 4096-token context, both
  from the memory planner over the config.json that ships with codeagent; on GPUs a GPU's
  memory, else RAM; the planner's verdict when this machine cannot hold it;
- offline (``HF_HUB_OFFLINE`` set, or the Hub does not answer one quick request) refuses with
  one message: that size and memory, and the three ways forward (a checkpoint folder or a
  model id in the local cache; a remote endpoint or a provider; a server on this machine);
- online refuses, with the numbers, a model this machine cannot hold or a download its free
  disk cannot; otherwise it states the size, the destination and the free disk, asks when a
  ``confirm`` is given (the terminal UI, before its screen opens; headless runs do not ask),
  and pulls (``catalog.pull``, with huggingface_hub's progress bars).

Limits: the size is the planner's estimate of the released checkpoint (weights only, as
``codeagent models`` shows it), not the Hub's file listing; the free disk is read once, before
the download; a model the planner cannot plan is fetched without the memory figure.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from codeagent.backend.catalog import PullError, pull
from codeagent.backend.distributed.layout import LayoutError
from codeagent.backend.loader import ALIASES, LoadError, hub_cache, resolve_model
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.hardware import HardwareError, cpu, detected_gpus, host_memory
from codeagent.backend.planning.plan import make_plan
from codeagent.backend.planning.refusal import LOAD_CONTEXT
from codeagent.backend.planning.report import verdict
from codeagent.backend.planning.source import model_source
from codeagent.backend.planning.units import size

HUB_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
OFFLINE_VALUES = {"1", "on", "yes", "true"}  # as huggingface_hub reads HF_HUB_OFFLINE
Confirm = Callable[[str], bool]  # the question -> the user's answer


@dataclass(frozen=True, slots=True)
class Needs:
    model_id: str
    download: int  # bytes, as released
    memory: int | None  # bytes on one device (GPU memory or RAM) to run here; None: unknown
    where: str  # "GPU memory" or "RAM"
    have: int  # bytes of it on one device here
    problem: str | None  # the planner's verdict when this machine cannot hold it

    def sentence(self) -> str:
        if not self.memory:
            return f"It is a {size(self.download)} download"
        verdict = "" if self.problem is None else ": it cannot run here"
        return (
            f"It is a {size(self.download)} download and needs {size(self.memory)} of {self.where} to run "
            f"(bfloat16); this machine has {size(self.have)}{verdict}"
        )


def needs(model: str) -> Needs | None:
    """What ``model`` (an alias or id with a shipped config) takes, from the planner; None when
    it cannot be planned here."""
    model_id = ALIASES.get(model.lower(), model)
    try:
        hardware = detected_gpus() or cpu(host_memory())
        source = model_source(model_id)
        plan = make_plan(
            source,
            hardware,
            torch.bfloat16,
            min(LOAD_CONTEXT, int(source.config.get("max_position_embeddings") or LOAD_CONTEXT)),
        )
    except (PlanError, LayoutError, HardwareError):
        return None
    fitting = plan.chosen or plan.candidates[0]
    memory = fitting.needed(plan.context) if fitting.problem is None else None
    where = "GPU memory" if hardware.kind == "cuda" else "RAM"
    problem = None if plan.chosen else verdict(plan)
    return Needs(model_id, sum(plan.checkpoint.values()), memory, where, hardware.memory, problem)


def ways_forward(model: str) -> str:
    return (
        f"Ways forward: --model PATH (a checkpoint folder) or a model id already in the local Hugging Face "
        f"cache ({hub_cache()}); a remote endpoint, --model remote:NAME (with CODEAGENT_BASE_URL and "
        "CODEAGENT_API_KEY), or a provider: anthropic:NAME, openai:NAME, deepseek:NAME; a server on this "
        "machine, --model local:URL (vLLM, SGLang, llama.cpp) or ollama:NAME; or download the default "
        f"later with 'codeagent models pull {model}'"
    )


def fetch_default(model: str, confirm: Confirm | None = None) -> Path:
    """The default model's folder: found, or pulled after saying what it takes. ``ValueError`` with
    one message when it cannot be had or the user says no."""
    try:
        return resolve_model(model)
    except LoadError:
        pass
    need = needs(model)
    model_id = ALIASES.get(model.lower(), model)
    absent = f"model {model!r} (the default, {model_id}) is not on this machine"
    known = f" {need.sentence()}." if need else ""
    if not hub_answers(model_id):
        raise ValueError(
            f"{absent} and cannot be downloaded: no connection to the Hugging Face Hub.{known} {ways_forward(model)}"
        )
    if need and need.problem:
        raise ValueError(f"{absent}, and not downloading it: {need.problem}. {ways_forward(model)}")
    cache, free = hub_cache(), free_disk(hub_cache())
    if need and free < need.download:
        raise ValueError(
            f"{absent}, and not downloading it: {no_room(need.download, free)}. {ways_forward(model)}"
        )
    plan = f"the default model {model_id} is not on this machine: downloading it to {cache} ({size(free)} free).{known}"
    if confirm is not None and not confirm(f"{plan} Download it now?"):
        raise ValueError(f"{absent}, and the download was declined. {ways_forward(model)}")
    print(f"codeagent: {plan}", file=sys.stderr)
    try:
        return pull(model)
    except PullError as err:
        raise ValueError(f"{absent}: {err}") from err


def announce_pull(model: str) -> None:
    """Before ``codeagent models pull``: the size (where the planner knows it), the destination and
    the free disk, on stderr; ``ValueError`` when the disk cannot hold the download."""
    need = needs(model)
    cache, free = hub_cache(), free_disk(hub_cache())
    if need and free < need.download:
        raise ValueError(f"not downloading {need.model_id}: {no_room(need.download, free)}")
    what = f"{need.model_id}, {size(need.download)}," if need else ALIASES.get(model.lower(), model)
    print(f"codeagent: downloading {what} to {cache} ({size(free)} free)", file=sys.stderr)


def no_room(download: int, free: int) -> str:
    return (
        f"{size(download)} does not fit the {size(free)} free under {hub_cache()} "
        "(set HF_HUB_CACHE to a bigger disk)"
    )


def hub_answers(model_id: str) -> bool:
    """Whether the Hugging Face Hub can be reached now (one HEAD request, a few seconds at most)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in OFFLINE_VALUES:
        return False
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:
        httpx.head(f"{endpoint}/api/models/{model_id}", timeout=HUB_TIMEOUT, follow_redirects=True)
    except httpx.HTTPError:
        return False
    return True


def free_disk(folder: Path) -> int:
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    return shutil.disk_usage(existing).free


def ask_on_terminal(question: str) -> bool:
    """The question on stderr, the answer from stdin (anything but yes is no)."""
    print(f"codeagent: {question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        return input().strip().lower() in ("y", "yes")
    except EOFError:
        return False
