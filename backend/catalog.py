"""What models exist on this machine, what they need in memory, and fetching new ones.

``local_models`` scans the Hugging Face cache for snapshots whose ``config.json`` names a
supported architecture; the size is read from the safetensors headers (parameters and the
bytes they take as stored), without loading anything. ``pull`` downloads through
``huggingface_hub`` with its progress bars; with no network it fails fast with
``PullError`` saying so. ``remote_config`` fetches a model's ``config.json`` alone, for the
memory planner to check before a download (``codeagent models pull``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeagent.backend.loader import ALIASES, LoadError, hub_cache, read_config, shard_files
from codeagent.backend.models.registry import ARCHITECTURES

PULL_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.txt", "*.py"]


class PullError(Exception):
    pass


@dataclass(slots=True)
class ModelInfo:
    name: str
    folder: Path
    architecture: str
    parameters: int
    weight_bytes: int

    @property
    def bf16_gib(self) -> float:
        return self.parameters * 2 / 2**30


def header(shard: Path) -> dict[str, dict[str, Any]]:
    """Every tensor of a safetensors file (``dtype``, ``shape``, ``data_offsets``), from its JSON
    header alone; ``OSError``, ``ValueError`` or ``struct.error`` for a file that is not one."""
    with shard.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        entries = json.loads(handle.read(length))
    if not isinstance(entries, dict):
        raise ValueError(f"{shard}: the safetensors header is not an object")
    return {name: entry for name, entry in entries.items() if name != "__metadata__"}


def header_sizes(shard: Path) -> tuple[int, int]:
    """(elements, bytes) of every tensor in a safetensors file, from its JSON header alone."""
    elements = total = 0
    for entry in header(shard).values():
        count = 1
        for size in entry["shape"]:
            count *= size
        elements += count
        total += entry["data_offsets"][1] - entry["data_offsets"][0]
    return elements, total


def describe(folder: Path, name: str) -> ModelInfo:
    architecture = read_config(folder)["architectures"][0]
    elements = total = 0
    for shard in shard_files(folder):
        shard_elements, shard_bytes = header_sizes(shard)
        elements += shard_elements
        total += shard_bytes
    return ModelInfo(name, folder, architecture, elements, total)


def local_models() -> list[ModelInfo]:
    found = []
    for config in sorted(hub_cache().glob("models--*/snapshots/*/config.json")):
        folder = config.parent
        name = folder.parents[1].name.removeprefix("models--").replace("--", "/")
        try:
            info = describe(folder, name)
        except (LoadError, OSError, ValueError, struct.error):
            continue  # incomplete downloads and other formats are not listed
        if info.architecture in ARCHITECTURES:
            found.append(info)
    return found


def remote_config(model_id: str) -> dict[str, Any] | None:
    """``config.json`` of a Hub model, fetched alone (a few KB) so a download can be planned
    first; None when it cannot be fetched (no network, no such model: the pull says why)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        config = json.loads(Path(hf_hub_download(model_id, "config.json")).read_text())
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def pull(model: str) -> Path:
    model_id = ALIASES.get(model.lower(), model)
    if "/" not in model_id:
        raise PullError(f"{model!r} is not a model id (org/name) or an alias ({', '.join(sorted(ALIASES))})")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model_id, allow_patterns=PULL_PATTERNS))
    except LocalEntryNotFoundError as err:
        raise PullError(
            f"cannot download {model_id}: no connection to the Hugging Face Hub. Copy the checkpoint here and "
            "pass --model PATH, or use a remote endpoint (--model remote:NAME)"
        ) from err
    except HfHubHTTPError as err:
        raise PullError(f"cannot download {model_id}: {err}") from err
