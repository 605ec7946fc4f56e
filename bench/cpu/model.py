"""The CPU bench's model: a random Qwen3-MoE at Qwen3-30B-A3B's layer shapes, written once.

Shapes (``REAL``): hidden 2048, 32 query heads over 4 KV heads of 128, 128 routed experts
top-8 of width 768, vocab 151,936, untied head; as many layers as make the checkpoint at
least 4 GB in bf16 (3: 4.98 GB), so its weights cannot stay in any CPU's cache. ``TINY``
keeps the structure at toy sizes, for the harness's test.

The folder (``--folder``, default the user's cache) holds a bf16 checkpoint as released
ones are laid out (``bench.checkpoint``: sharded safetensors, one shard per layer) and a
tokenizer (``bench.cpu.vocab``), so llama.cpp's converter takes it as it is. It is written
under a temporary name and renamed when complete, and reused while its ``config.json``
matches: a run interrupted while writing leaves nothing that a later run would trust.

Limits: the weights are normal(0, 0.02) and routing is what random weights give (close to
uniform): decode speed depends on shapes and bytes, not on values.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codeagent import xdg
from codeagent.bench.checkpoint import qwen3_config, write_checkpoint
from codeagent.bench.cpu.vocab import write_tokenizer

MIN_BYTES = 4 * 10**9  # the checkpoint in bf16, at least


@dataclass(frozen=True, slots=True)
class Shapes:
    name: str
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int
    top_k: int
    width: int
    vocab: int
    min_bytes: int  # fewest bf16 bytes the checkpoint may have (it takes the layers to reach them)


REAL = Shapes("Qwen3-30B-A3B", 2048, 32, 4, 128, 128, 8, 768, 151936, MIN_BYTES)
TINY = Shapes("tiny", 64, 4, 2, 16, 8, 2, 32, 512, 1)


def layer_params(s: Shapes) -> int:
    attention = (2 * s.heads + 2 * s.kv_heads) * s.head_dim * s.hidden + 2 * s.head_dim
    return attention + s.experts * s.hidden + 3 * s.experts * s.width * s.hidden + 2 * s.hidden


def layers_for(s: Shapes) -> int:
    """The fewest layers (at least 2) that make the checkpoint at least ``s.min_bytes`` in bf16."""
    fixed = 2 * s.vocab * s.hidden + s.hidden
    layers = 2
    while 2 * (fixed + layers * layer_params(s)) < s.min_bytes:
        layers += 1
    return layers


def config(s: Shapes, layers: int) -> dict[str, Any]:
    c = qwen3_config(s.hidden, layers, s.experts, s.width, s.vocab)
    c.update(
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        head_dim=s.head_dim,
        num_experts_per_tok=s.top_k,
        intermediate_size=8 * s.width,
        max_position_embeddings=40960,
        torch_dtype="bfloat16",
        bos_token_id=None,
        eos_token_id=None,
    )
    return c


def default_folder(s: Shapes, layers: int) -> Path:
    return xdg.folder("cache") / "bench-cpu" / f"qwen3-moe-{s.name.lower()}-shapes-{layers}-layers"


def ensure(folder: Path, wanted: dict[str, Any], log: Callable[[str], None]) -> Path:
    """``folder`` holding a checkpoint of ``wanted``: reused if there, else written (bf16)."""
    found = folder / "config.json"
    if found.is_file() and _same(found, wanted) and (folder / "tokenizer.json").is_file():
        log(f"reusing the checkpoint in {folder}")
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise RuntimeError(
            f"{folder} holds something other than this bench's model; give another --folder or empty it"
        )
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log(f"writing a random bf16 checkpoint ({wanted['num_hidden_layers']} layers) to {folder}")
    torch.manual_seed(0)
    size = write_checkpoint(partial, wanted, torch.bfloat16)
    write_tokenizer(partial, wanted["vocab_size"])
    if folder.exists():
        folder.rmdir()
    partial.rename(folder)
    log(f"written: {size / 1e9:.2f} GB of weights")
    return folder


def _same(path: Path, wanted: dict[str, Any]) -> bool:
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(wanted))
    except (OSError, ValueError):
        return False


def checkpoint_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))
