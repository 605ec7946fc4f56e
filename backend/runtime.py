"""The one factory from a checkpoint folder to a running model: load -> chat model -> engine -> service.

Each step is a function its own callers can stop at:

- ``pick_device`` and ``DTYPES``: the device (CUDA where torch sees one, the CPU elsewhere;
  asking for CUDA where there is none is a ``LoadError``) and the weights' dtype (bfloat16
  on GPUs and CPUs alike, unless named: float32 doubles a CPU run's memory for little gain);
- ``load``: the weights on that device, timed (with ``pack``, converted to FP8 or FP4 after
  loading: ``packing.py``, opt-in, bf16 or float32 checkpoints in one process); first the
  memory planner (``planning/refusal.py``) checks, from the checkpoint's headers, that the
  weights, the workspace and a 4096-token KV cache fit the device's free memory (the host's
  available memory on a CPU), and refuses with a ``LoadError`` giving the numbers, the
  smallest layout that would fit and the remote-endpoint alternative, instead of failing
  while loading;
- ``chat_model``: the tokenizer, chat template, family and context window
  (``chat/model.py``); a checkpoint without ``tokenizer.json`` cannot chat (``LoadError``);
- ``build_engine``: the engine over the loaded model; with a disk tier, its cache is
  namespaced by the checkpoint's fingerprint, dtype, device and packing, so other checkpoints
  (or the same one in another dtype, or packed) never read each other's blocks;
- ``open_runtime``: all of it, with the engine on its background thread (``EngineService``),
  as one ``Runtime`` whose ``generate`` submits a prompt and returns the ``Generation``
  (``generation.py``) that turns its ids back into a reply.

Who stops where: the in-process client (``client.py``) and ``codeagent serve`` open a whole
runtime; ``codeagent generate`` loads and builds an engine it drives synchronously (it runs
token ids without a tokenizer and ends a sequence at the exact token that completes a stop
string, through the engine's hook); the benchmarks load through here and build their
engines themselves where the engine is what they time.

Limits: one model on one device per runtime; the check before loading plans the layout asked on
this machine (with ``--tp``, every GPU taken as free as the current one; on a CPU the ranks
share the host), and the KV pool is still sized by the engine, from the memory left after
loading.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from codeagent import xdg
from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.chat.model import REMEMBERED_TURNS, ChatModel
from codeagent.backend.chat.prompt import Prompt
from codeagent.backend.distributed.group import SOLO, Group
from codeagent.backend.distributed.launch import LaunchError, Workers, start
from codeagent.backend.distributed.layout import LayoutError
from codeagent.backend.distributed.runner import GroupFailed
from codeagent.backend.engine import Engine
from codeagent.backend.generation import Generation
from codeagent.backend.kernels.dispatch import kernels_in_use
from codeagent.backend.layers.offload import RoutingCounts
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadedModel, LoadError, load_model, model_fingerprint, read_config
from codeagent.backend.packing import VARIANTS, Converted, PackError, check_checkpoint, pack
from codeagent.backend.planning.hardware import HardwareError
from codeagent.backend.planning.offload import auto as auto_cpu_experts
from codeagent.backend.planning.refusal import before_load
from codeagent.backend.service import EngineService

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str | None = None) -> str:
    """``name``, or CUDA where torch sees a device and the CPU elsewhere."""
    if name == "cuda" and not torch.cuda.is_available():
        raise LoadError("--device cuda was asked for, but torch sees no CUDA device here")
    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(name: str | None, device: str | torch.device) -> str:
    """``name``, or the weights' dtype: bfloat16 on every device (half the memory of float32, which a
    CPU run still gets with ``--dtype float32``). ``device`` is kept for callers that name it."""
    del device
    name = name or "bfloat16"
    if name not in DTYPES:
        raise LoadError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return name


@dataclass(slots=True)
class Loaded:
    """A checkpoint's model on its device, with what was chosen to load it."""

    checkpoint: LoadedModel
    device: str
    dtype: str
    load_s: float
    group: Group = SOLO  # this process's tensor-parallel group (rank 0 of it)
    workers: Workers | None = None  # the follower ranks this process started
    pack: str | None = None  # the packing its weights were converted to (``packing.VARIANTS``)
    converted: list[Converted] = field(default_factory=list)  # what that conversion did

    def close(self) -> None:
        """Keep the routing counts for the next load's placement; end the other ranks (after the
        engine told them to stop)."""
        routing = getattr(self.checkpoint.model, "routing", None)
        if routing is not None:
            with contextlib.suppress(OSError):
                routing.save(routing_file(self.checkpoint.folder))
        if self.workers is not None:
            self.workers.close()
            self.group.close()


def load(
    folder: Path,
    dtype: str | None = None,
    device: str | None = None,
    tp: int = 1,
    ep: bool = False,
    cpu_experts: int = 0,
    pack: str | None = None,
) -> Loaded:
    """The model on its device; with ``tp`` > 1 split across that many ranks, this process rank 0
    (``distributed/launch.py`` starts the others, or ``torchrun`` did). ``cpu_experts``: routed
    experts per sparse layer kept in host memory (-1: ``auto``, as many as the device's free
    memory needs moved; none on a CPU). ``pack``: "fp8" or "fp4", the loaded weights converted
    (``packing.py``; the load time includes the conversion)."""
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    if pack is not None:
        refuse_what_cannot_pack(folder, pack, tp, ep, cpu_experts)
    if not cpu_experts:  # the planner counts every routed expert on the device
        refuse_what_cannot_fit(folder, dtype, device, tp, ep)
    started = time.perf_counter()
    if tp == 1 and not ep:
        if cpu_experts < 0:  # "auto": what the device's free memory needs moved to the host
            cpu_experts = auto_cpu_experts(folder, DTYPES[dtype], device)
        routed = saved_routing(folder) if cpu_experts else None
        checkpoint = load_model(folder, DTYPES[dtype], device, cpu_experts=cpu_experts, routed=routed)
        converted = packed(checkpoint, pack) if pack is not None else []
        return Loaded(
            checkpoint, device, dtype, time.perf_counter() - started, pack=pack, converted=converted
        )
    if cpu_experts:
        raise LoadError("--cpu-experts runs with one process for now; drop --tp/--ep or --cpu-experts")
    try:
        group, workers, local = start(folder, dtype, device, tp, ep)
    except LayoutError as err:
        raise LoadError(str(err)) from err
    except LaunchError as err:
        raise LoadError(str(err)) from err
    try:
        checkpoint = load_model(folder, DTYPES[dtype], str(local), group)
    except LoadError:
        workers.close(timeout=5)
        group.close()
        raise
    return Loaded(checkpoint, str(local), dtype, time.perf_counter() - started, group, workers)


PACK_WITH_RANKS = "--pack runs with one process for now; drop --tp/--ep or --pack"


def refuse_what_cannot_pack(folder: Path, variant: str, tp: int, ep: bool, cpu_experts: int) -> None:
    """``LoadError`` before loading when ``pack`` cannot apply: an unknown variant, a split model
    or experts in host memory, a checkpoint that is not bf16 or float32."""
    if variant not in VARIANTS:
        raise LoadError(f"unknown packing {variant!r}; expected one of {', '.join(VARIANTS)}")
    if tp > 1 or ep:
        raise LoadError(PACK_WITH_RANKS)
    if cpu_experts:
        raise LoadError("--pack and --cpu-experts do not combine yet; drop one of the two")
    try:
        check_checkpoint(folder)
    except PackError as err:
        raise LoadError(str(err)) from None


def packed(checkpoint: LoadedModel, variant: str) -> list[Converted]:
    """The loaded model's weights converted in place (``packing.pack``); its refusal a ``LoadError``."""
    try:
        return pack(checkpoint.model, variant)
    except PackError as err:
        raise LoadError(f"{checkpoint.folder}: {err}") from None


def routing_file(folder: Path) -> Path:
    """Where a checkpoint's routing counts are kept between runs (``--cpu-experts`` placement)."""
    return xdg.folder("cache") / "routing" / f"{model_fingerprint(folder).hex()[:32]}.json"


def saved_routing(folder: Path) -> torch.Tensor | None:
    raw = read_config(folder)
    layers = raw.get("num_hidden_layers")
    experts = raw.get("num_experts") or raw.get("num_local_experts") or raw.get("n_routed_experts")
    if not isinstance(layers, int) or not isinstance(experts, int):
        return None
    return RoutingCounts.read(routing_file(folder), layers, experts)


def refuse_what_cannot_fit(folder: Path, dtype: str, device: str, tp: int = 1, ep: bool = False) -> None:
    """``LoadError`` with the planner's numbers when ``folder`` cannot fit ``device`` in ``dtype``
    (split ``tp`` ways: each rank its GPU, or a ``tp``-th of the host)."""
    try:
        problem = before_load(folder, DTYPES[dtype], device, tp, ep)
    except HardwareError as err:
        raise LoadError(str(err)) from None
    if problem is not None:
        raise LoadError(problem)


def has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file()


def chat_model(folder: Path, name: str | None = None, remembered_turns: int = REMEMBERED_TURNS) -> ChatModel:
    """The checkpoint's text side, from its tokenizer files and ``config.json`` (no weights read)."""
    if not has_tokenizer(folder):
        raise LoadError(f"{folder} has no tokenizer.json; the chat format needs the model's tokenizer")
    return ChatModel.from_dir(folder, read_config(folder), name, remembered_turns)


def disk_namespace(folder: Path, dtype: str, device: str, pack: str | None = None) -> bytes:
    """Names a checkpoint's cached KV on disk: its content, the dtype, the device and the packing
    (a packed model's keys and values differ from the full-precision model's)."""
    return model_fingerprint(folder) + f"{dtype}:{device}".encode() + (f":{pack}".encode() if pack else b"")


def build_engine(loaded: Loaded, eos_token_ids: set[int], cache: CacheConfig | None = None) -> Engine:
    with_disk = cache is not None and cache.disk_folder is not None
    namespace = (
        disk_namespace(loaded.checkpoint.folder, loaded.dtype, loaded.device, loaded.pack)
        if with_disk
        else b""
    )
    return Engine(
        loaded.checkpoint.model,
        eos_token_ids,
        loaded.device,
        cache=cache,
        namespace=namespace,
        group=loaded.group,
    )


@dataclass(slots=True)
class RuntimeConfig:
    dtype: str | None = None  # default: bfloat16
    device: str | None = None  # default: CUDA where torch sees one
    cache: CacheConfig | None = None  # default: the KV pool in memory, no disk tier
    name: str | None = None  # what clients call the model; default: the folder's name
    remembered_turns: int = REMEMBERED_TURNS
    tp: int = 1  # ranks the model is split across (tensor parallelism)
    ep: bool = False  # routed experts divided among the ranks whole
    cpu_experts: int = 0  # routed experts per sparse layer kept in host memory
    pack: str | None = None  # "fp8" or "fp4": the weights converted after loading (opt-in)
    constrain: bool = True  # decode replies under their grammar (``grammar/``)


@dataclass(slots=True)
class Runtime:
    """A loaded model behind its engine's thread, ready for requests from any thread."""

    model: ChatModel
    engine: Engine
    service: EngineService
    load_s: float
    loaded: Loaded | None = None
    _closed: bool = field(default=False, init=False)

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def kernels(self) -> str:
        """What a forward pass runs, in words."""
        return kernels_in_use(self.engine.device)

    def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        """Submit ``prompt``; ValueError when the engine could never hold it."""
        return Generation.start(self.model, self.service, prompt, params)

    def close(self) -> None:
        """Stop the engine's thread (blocks queued for the disk tier reach it first); idempotent."""
        if not self._closed:
            self._closed = True
            self.service.close()
            if self.loaded is not None:
                self.loaded.close()


def open_runtime(folder: Path, config: RuntimeConfig | None = None) -> Runtime:
    """Load ``folder`` and start its engine; ``LoadError`` says what is missing or wrong."""
    config = config or RuntimeConfig()
    device = pick_device(config.device)
    model = chat_model(folder, config.name, config.remembered_turns)  # before the weights: fails fast
    model.constrain = config.constrain
    loaded = load(folder, config.dtype, device, config.tp, config.ep, config.cpu_experts, config.pack)
    try:
        engine = build_engine(loaded, model.tokenizer.eos_token_ids, config.cache)
    except GroupFailed as err:
        loaded.close()
        raise LoadError(f"the ranks failed while setting up: {err}") from err
    return Runtime(model, engine, EngineService(engine), loaded.load_s, loaded)
