"""Finding and loading Hugging Face-format checkpoints.

``resolve_model`` turns what the user typed into a folder: a path, an alias
(``qwen3-coder-30b-a3b``), or a model id found in the local Hugging Face cache
(``hub_cache``: where ``huggingface_hub`` puts downloads, ``$XDG_CACHE_HOME`` included). Nothing is downloaded
here; ``codeagent models pull`` does that.

``load_model`` reads ``config.json``, picks the class from the registry, builds the model
with uninitialised weights on the target device and dtype, then streams tensors from the
safetensors shards (memory-mapped, one tensor at a time) into it, so the peak stays near
the size of the weights. Every way a checkpoint can be broken (no config, unknown
architecture, a shard missing or corrupt, wrong shapes, missing weights) is a
``LoadError`` with one clear message.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from codeagent.backend import huge_pages
from codeagent.backend.distributed.group import SOLO, Group
from codeagent.backend.distributed.layout import LayoutError
from codeagent.backend.models.registry import UnsupportedArchitecture, model_class
from codeagent.backend.stored import stored_tensors

ALIASES: dict[str, str] = {
    "qwen3-coder-30b-a3b": "Qwen/Qwen3-Coder-30B-A3B-Instruct",
    "qwen3-coder-480b-a35b": "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "qwen3-coder-next": "Qwen/Qwen3-Coder-Next",
    "qwen3.5-35b-a3b": "Qwen/Qwen3.5-35B-A3B",
    "deepseek-v4-flash": "deepseek-ai/DeepSeek-V4-Flash",
    "deepseek-v4-pro": "deepseek-ai/DeepSeek-V4-Pro",
}


class LoadError(Exception):
    """The model cannot be found or its checkpoint is unusable."""


def hub_cache() -> Path:
    """Where ``huggingface_hub`` keeps downloads, by its own rules (``constants.HF_HUB_CACHE``):
    ``$HF_HUB_CACHE``, ``$HUGGINGFACE_HUB_CACHE``, ``$HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``,
    ``~/.cache/huggingface/hub``, a set but empty variable counting as set, as it does. Read
    from the environment at each call: the library's constants are fixed when it is imported."""
    env = os.environ
    home = env.get(
        "HF_HOME", os.path.join(env.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    )
    default = os.path.join(os.path.expandvars(os.path.expanduser(home)), "hub")
    cache = env.get("HF_HUB_CACHE", env.get("HUGGINGFACE_HUB_CACHE", default))
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def cached_snapshot(model_id: str) -> Path | None:
    """The newest complete snapshot of ``model_id`` in the local Hugging Face cache."""
    folder = hub_cache() / ("models--" + model_id.replace("/", "--"))
    ref = folder / "refs" / "main"
    if ref.is_file():
        snapshot = folder / "snapshots" / ref.read_text().strip()
        if (snapshot / "config.json").is_file():
            return snapshot
    snapshots = sorted((folder / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return snapshots[-1].parent if snapshots else None


def resolve_model(spec: str) -> Path:
    path = Path(spec).expanduser()
    if spec.startswith(("/", ".", "~")) and not path.exists():
        raise LoadError(f"no checkpoint folder at {path}")
    if path.exists():
        if not (path / "config.json").is_file():
            raise LoadError(f"{path} has no config.json; it is not a Hugging Face-format checkpoint")
        return path.resolve()
    model_id = ALIASES.get(spec.lower(), spec)
    if "/" in model_id and (snapshot := cached_snapshot(model_id)):
        return snapshot
    known = ", ".join(sorted(ALIASES))
    raise LoadError(
        f"model {spec!r} is not a folder and not in the local Hugging Face cache ({hub_cache()}); "
        f"pass --model PATH to a checkpoint folder, download it with 'codeagent models pull {model_id}', "
        f"or use a remote endpoint (--model remote:NAME). Aliases: {known}"
    )


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LoadError(f"cannot read {folder / 'config.json'}: {err}") from err
    if not isinstance(config, dict) or not config.get("architectures"):
        raise LoadError(f"{folder / 'config.json'} names no architectures")
    return config


def shard_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise LoadError(f"{index} is not a valid safetensors index: {err}") from err
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise LoadError(f"checkpoint shard(s) missing in {folder}: {', '.join(missing)}")
        return [folder / name for name in names]
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise LoadError(f"no *.safetensors files in {folder}")
    return shards


def iter_weights(
    shards: list[Path], device: str | torch.device = "cpu"
) -> Iterator[tuple[str, torch.Tensor]]:
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt", device=str(device)) as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    yield key, handle.get_tensor(key)
        except SafetensorError as err:
            raise LoadError(f"{shard} is corrupt or not a safetensors file: {err}") from err


@dataclass(slots=True)
class LoadedModel:
    model: Any
    folder: Path
    config: dict[str, Any]
    architecture: str


def load_model(
    folder: Path,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    group: Group = SOLO,
    cpu_experts: int = 0,
    routed: torch.Tensor | None = None,
) -> LoadedModel:
    """The model in ``folder``; as one rank of ``group``, only that rank's share of it, read as
    slices from the files (``stored.py``), so a rank's peak is its share plus the replicated parts."""
    raw = read_config(folder)
    architecture = raw["architectures"][0]
    try:
        cls = model_class(architecture)
    except UnsupportedArchitecture as err:
        raise LoadError(str(err)) from err
    try:
        config = cls.config_class.from_dict(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise LoadError(f"{folder / 'config.json'} is not a valid {architecture} config: {err}") from err
    if cpu_experts:
        if group.size > 1:
            raise LoadError("--cpu-experts runs with one process for now; drop --tp/--ep or --cpu-experts")
        if not getattr(cls, "offloads", False):
            raise LoadError(f"--cpu-experts is not available for {architecture} yet")
        try:
            model = cls(config, dtype=dtype, device=device, cpu_experts=cpu_experts, routed=routed)
        except ValueError as err:
            raise LoadError(f"--cpu-experts {cpu_experts}: {err}") from err
        weights: Iterable[tuple[str, Any]] = iter_weights(shard_files(folder), device)
    elif group.size == 1:
        model = cls(config, dtype=dtype, device=device)
        weights = iter_weights(shard_files(folder), device)
    elif getattr(cls, "splits", False):
        try:
            model = cls(config, dtype=dtype, device=device, group=group)
        except LayoutError as err:
            raise LoadError(f"{folder}: {err}") from err
        weights = (item for shard in shard_files(folder) for item in stored_tensors(shard))
    else:
        raise LoadError(f"{architecture} cannot be split across ranks yet; run it with --tp 1")
    # the weights are not yet touched: the loader's copy then places them in 2 MB pages
    huge_pages.advise(itertools.chain(model.parameters(), model.buffers()))
    try:
        model.load_weights(weights)
    except (KeyError, ValueError) as err:
        raise LoadError(f"{folder}: {err}") from err
    return LoadedModel(model.eval(), folder, raw, architecture)


def model_fingerprint(folder: Path, sample_bytes: int = 1 << 16) -> bytes:
    """Identifies a checkpoint's content cheaply, to namespace its cached KV on disk: the config,
    and per weight file its name, size and samples from its start (the header), middle and end.
    Another checkpoint, or the same one re-saved with other weights, gets another fingerprint."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in shard_files(folder):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            for offset in (0, max(0, size // 2 - sample_bytes // 2), max(0, size - sample_bytes)):
                handle.seek(offset)
                digest.update(handle.read(sample_bytes))
    return digest.digest()
