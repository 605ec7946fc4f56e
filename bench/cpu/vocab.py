"""A tokenizer for the CPU bench's random model, made here (no downloads), that llama.cpp's
converter accepts and that makes every generated token readable back from text.

A byte-level BPE is trained on a few lines of English (a few hundred tokens, no special
tokens), then its vocabulary is filled up to the model's size with ``<id>`` pieces that no
merge produces: a prompt of plain words encodes to the same ids in ``tokenizers`` and in
llama.cpp's GPT-2 pre-tokenizer, and any id the random model generates decodes to text
that names it, so llama.cpp's printed output compares with ours as text.

Limits: the converter recognizes pre-tokenizers by the hash of a sample's ids; ours is
unknown to it, so ``bench.cpu.llamacpp`` runs it with the name ``gpt-2`` given (the regex
this ByteLevel pre-tokenizer uses). Text outside ASCII may split differently between the two.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "You are a careful software engineer. Read the file, fix the bug, run the tests.",
    "The quick brown fox jumps over the lazy dog while the engine decodes one token at a time.",
    "def mean(values):\n    return sum(values) / len(values)\n",
] * 20
PROMPT = "Read the file, fix the bug, run the tests."


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 400),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    data = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    for i in range(len(vocab), vocab_size):
        vocab[f"<{i}>"] = i
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "bos_token": None}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")


def encode(folder: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


def decode(folder: Path, ids: list[int]) -> str:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).decode(ids)
