"""Random checkpoints with a real byte-level BPE vocabulary, for ``codeagent bench grammar``.

``model_folder(folder, vocab, shape)`` writes a random Qwen3-MoE (``checkpoint.write_checkpoint``)
and a tokenizer trained here, on the Python standard library's sources (no download), to
``vocab`` tokens, laid out like Qwen3's: ``<|endoftext|>``, ``<|im_start|>`` and ``<|im_end|>``
special (the last ends a reply), ``<tool_call>``, ``</tool_call>``, ``<think>`` and ``</think>``
added as single tokens. Qwen's own vocabulary is not available offline; a 150K vocabulary
trained on code has its size and its long tokens, which is what mask time depends on.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import torch

from codeagent.bench.checkpoint import qwen3_config, write_checkpoint

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = ["<tool_call>", "</tool_call>", "<think>", "</think>"]
SHAPES = {  # hidden, layers, experts, expert width
    "tiny": (64, 2, 4, 32),
    "engine": (512, 8, 32, 256),  # the engine bench's model (bench/engine_models.py)
}


def corpus(limit_chars: int) -> list[str]:
    """Python sources of this interpreter's standard library, in a stable order, up to ``limit_chars``."""
    texts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(text)
        total += len(text)
        if total >= limit_chars:
            break
    return texts


def write_tokenizer(folder: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab - len(ADDED),
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(2_000_000 if vocab <= 4096 else 60_000_000), trainer)
    tokenizer.add_tokens(ADDED)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "bos_token": None, "pad_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def model_folder(folder: Path, vocab: int, shape: str) -> Path:
    """A random Qwen3-MoE of ``shape`` (``SHAPES``) with a ``vocab``-token tokenizer, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder, vocab)
    hidden, layers, experts, width = SHAPES[shape]
    config = qwen3_config(hidden=hidden, layers=layers, experts=experts, width=width, vocab=vocab)
    config["max_position_embeddings"] = 32768
    torch.manual_seed(0)  # the same random weights every run
    write_checkpoint(folder, config, torch.float32)
    return folder
