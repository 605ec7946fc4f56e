"""Subcommands of the embedded runtime: ``generate`` and ``models``.

What a model generates, and the names of downloaded checkpoints, are printed through
``tui.inert``; ``--json`` output is ASCII (``json.dumps``' default), inert already.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch

from codeagent.agent.config import Config
from codeagent.backend.engine import Engine, Request
from codeagent.backend.kernels.dispatch import kernels_in_use
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, load_model, resolve_model
from codeagent.backend.stopping import StopStrings
from codeagent.tui.commands import CommandError
from codeagent.tui.inert import inert

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _device(name: str) -> str:
    if name == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda was asked for, but torch sees no CUDA device here")
    return name


def _prompt_ids(args: Any, folder: Any) -> tuple[list[int], Any]:
    if args.prompt_ids is not None:
        try:
            ids = [int(part) for part in args.prompt_ids.split(",") if part.strip()]
        except ValueError as err:
            raise CommandError(f"--prompt-ids takes comma-separated integers: {err}") from err
        if not ids:
            raise CommandError("--prompt-ids is empty")
        return ids, _tokenizer_or_none(folder)
    tokenizer = _tokenizer_or_none(folder)
    if tokenizer is None:
        raise CommandError(f"{folder} has no tokenizer.json; pass --prompt-ids instead of --prompt")
    return tokenizer.encode(args.prompt), tokenizer


def _tokenizer_or_none(folder: Any) -> Any:
    if not (folder / "tokenizer.json").is_file():
        return None
    from codeagent.backend.chat.tokenizer import Tokenizer

    return Tokenizer.from_dir(folder)


def generate(args: Any, config: Config) -> int:
    del config
    try:
        folder = resolve_model(args.model)
        device = _device(args.device)
        started = time.perf_counter()
        loaded = load_model(folder, dtype=DTYPES[args.dtype], device=device)
        load_s = time.perf_counter() - started
    except LoadError as err:
        raise CommandError(str(err)) from err
    prompt, tokenizer = _prompt_ids(args, folder)
    if args.stop and tokenizer is None:
        raise CommandError("--stop needs the checkpoint's tokenizer; use --stop-token-id with token ids")
    try:
        params = SamplingParams(
            args.temperature,
            args.top_k,
            args.top_p,
            args.min_p,
            args.max_tokens,
            args.seed,
            stop_token_ids=tuple(args.stop_token_id or ()),
        )
    except ValueError as err:
        raise CommandError(str(err)) from err
    stream = (
        None if args.json or tokenizer is None else (lambda piece: print(inert(piece), end="", flush=True))
    )
    watcher = StopStrings(tokenizer, args.stop or [], stream) if tokenizer is not None else None
    eos = tokenizer.eos_token_ids if tokenizer is not None else set()
    request = Request(prompt, params, watcher.push if watcher else None)
    result = Engine(loaded.model, eos, device).generate([request])[0]
    if watcher:
        watcher.flush()
    text = watcher.text if watcher else None
    decode_tokens = max(len(result.token_ids) - 1, 0)
    report = {
        "model": str(folder),
        "architecture": loaded.architecture,
        "prompt_tokens": len(prompt),
        "token_ids": result.token_ids,
        "text": text,
        "finish_reason": result.finish_reason,
        "load_s": round(load_s, 3),
        "prefill_s": round(result.prefill_s, 4),
        "decode_s": round(result.decode_s, 4),
        "decode_tokens_per_s": round(decode_tokens / result.decode_s, 2) if result.decode_s > 0 else None,
        "kernels": kernels_in_use(device),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print("" if text is not None else " ".join(map(str, result.token_ids)))
        print(
            f"[{len(result.token_ids)} tokens, {report['decode_tokens_per_s']} tok/s decode; {report['kernels']}]",
            file=sys.stderr,
        )
    return 0


def models(args: Any, config: Config) -> int:
    from codeagent.backend.catalog import PullError, local_models, pull
    from codeagent.backend.loader import ALIASES

    if args.action == "pull":
        try:
            folder = pull(args.model_id)
        except PullError as err:
            raise CommandError(str(err)) from err
        print(inert(f"downloaded to {folder}"))
        return 0
    found = local_models()
    default = config.model or "qwen3-coder-30b-a3b"
    lines = [f"default model: {default}"]
    if not found:
        lines.append("no supported models in the local Hugging Face cache")
    lines += [
        f"  {info.name}  {info.architecture}  {info.parameters / 1e9:.2f}B parameters, "
        f"{info.weight_bytes / 2**30:.1f} GiB as stored, {info.bf16_gib:.1f} GiB in bf16  ({info.folder})"
        for info in found
    ]
    lines.append(
        "aliases: " + ", ".join(f"{alias} -> {model_id}" for alias, model_id in sorted(ALIASES.items()))
    )
    print(inert("\n".join(lines)))  # names and folders come from downloaded checkpoints
    return 0
