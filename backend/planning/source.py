"""Where a plan's model comes from: a checkpoint folder, the local Hugging Face cache, or a
released ``config.json`` that ships with codeagent.

``model_source(spec)`` takes what ``--model`` takes: a folder (with its weights, whose
safetensors headers then give the exact bytes; or with only ``config.json``, estimated),
an alias (``loader.ALIASES``) or a model id, looked up first in the local cache and then
among the shipped configurations (``configs/*.json``, listed in ``SHIPPED``; where each
value comes from is in ``configs/PROVENANCE.md``). Nothing is downloaded here.

``shipped_models()`` describes every shipped configuration without a download (what
``codeagent models`` lists): its alias, architecture, window, and parameters and bytes as
the planner's estimate of the release spells them (``checkpoint.estimated``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from codeagent.backend.loader import ALIASES, LoadError, cached_snapshot, read_config, shard_files
from codeagent.backend.planning import PlanError

SHIPPED = {  # model id -> its released config.json, in configs/
    "deepseek-ai/DeepSeek-V4-Flash": "DeepSeek-V4-Flash.json",
    "deepseek-ai/DeepSeek-V4-Pro": "DeepSeek-V4-Pro.json",
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": "Qwen3-Coder-30B-A3B-Instruct.json",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": "Qwen3-Coder-480B-A35B-Instruct.json",
    "Qwen/Qwen3-Coder-Next": "Qwen3-Coder-Next.json",
    "Qwen/Qwen3.5-35B-A3B": "Qwen3.5-35B-A3B.json",
}


@dataclass(frozen=True, slots=True)
class ShippedModel:
    model_id: str
    aliases: list[str]
    architecture: str
    window: int  # tokens
    parameters: int  # as the release stores them, estimated from the config
    stored_bytes: int


def shipped_models() -> list[ShippedModel]:
    """The models whose released config.json ships with codeagent, described from it alone."""
    import torch

    from codeagent.backend.planning.checkpoint import estimated
    from codeagent.backend.planning.kv import meta_model

    out = []
    for model_id in SHIPPED:
        config = shipped_config(model_id)
        assert config is not None
        meta = meta_model(config, torch.bfloat16)
        entries = estimated(config, meta.config)
        parameters = sum(
            math.prod(entry.logical if entry.format == "fp4" else entry.shape) * entry.count
            for entry in entries
        )
        aliases = sorted(alias for alias, known in ALIASES.items() if known == model_id)
        window = int(meta.config.max_position_embeddings)
        stored = sum(entry.nbytes for entry in entries)
        out.append(ShippedModel(model_id, aliases, config["architectures"][0], window, parameters, stored))
    return out


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str  # the model id, or the folder
    config: dict[str, Any]  # its config.json
    folder: Path | None  # a checkpoint whose safetensors headers give exact bytes; None: estimate
    origin: str  # in words, for the report

    @property
    def architecture(self) -> str:
        return str(self.config["architectures"][0])


def shipped_config(model_id: str) -> dict[str, Any] | None:
    """The released config.json of ``model_id`` (an id or alias) if it ships with codeagent."""
    wanted = ALIASES.get(model_id.lower(), model_id).lower()
    for known, filename in SHIPPED.items():
        if known.lower() == wanted:
            text = resources.files("codeagent.backend.planning").joinpath("configs", filename).read_text()
            return json.loads(text)
    return None


def model_source(spec: str) -> ModelSource:
    """A folder, an alias or a model id, as a model to plan (``PlanError`` when none is found)."""
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith(("/", ".", "~")):
        return _folder(path)
    model_id = ALIASES.get(spec.lower(), spec)
    snapshot = cached_snapshot(model_id) if "/" in model_id else None
    if snapshot is not None:
        return _folder(snapshot, model_id)
    config = shipped_config(model_id)
    if config is not None:
        return ModelSource(model_id, config, None, "the released config.json shipped with codeagent")
    known = ", ".join(sorted(ALIASES)) + "; " + ", ".join(SHIPPED)
    raise PlanError(
        f"model {spec!r} is not a folder, not in the local Hugging Face cache and not among the "
        f"configurations shipped with codeagent ({known}); pass --model DIR with its config.json"
    )


def _folder(path: Path, name: str | None = None) -> ModelSource:
    if not path.exists():
        raise PlanError(f"no checkpoint folder at {path}")
    if not (path / "config.json").is_file():
        raise PlanError(f"{path} has no config.json; it is not a Hugging Face-format checkpoint")
    try:
        config = read_config(path)
    except LoadError as err:
        raise PlanError(str(err)) from None
    try:
        has_weights = bool(shard_files(path))
    except LoadError:
        has_weights = False  # config only, or an incomplete download: estimate from the config
    origin = "the checkpoint's safetensors headers" if has_weights else "its config.json (no weights there)"
    return ModelSource(name or str(path), config, path if has_weights else None, origin)
