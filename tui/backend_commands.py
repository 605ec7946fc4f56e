"""Subcommands of the embedded runtime: ``generate`` and ``models``.

``models pull`` asks the memory planner first (``backend/planning/refusal.py``): a model that
cannot run on this machine's GPUs (or, without GPUs, in its memory) is refused with the
numbers before anything is downloaded, unless ``--force``; then it states the size, the
destination and the free disk, and refuses a download the disk cannot hold (``tui.firstrun``).

``generate`` loads through the runtime's factory (``backend/runtime.py``: device, dtype,
weights, engine) and drives the engine synchronously: it takes token ids without a
tokenizer, and a stop string ends the sequence at the exact token that completes it (the
engine's per-token hook), which the service-based text path cannot promise.

What a model generates, and the names of downloaded checkpoints, are printed through
``tui.inert``; ``--json`` output is ASCII (``json.dumps``' default), inert already.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from codeagent.agent.config import Config
from codeagent.backend.chat.stopping import StopStrings
from codeagent.backend.chat.tokenizer import Tokenizer
from codeagent.backend.distributed.runner import GroupFailed
from codeagent.backend.engine import Request
from codeagent.backend.kernels.dispatch import kernels_in_use
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, resolve_model
from codeagent.backend.runtime import Loaded, build_engine, has_tokenizer, load, pick_device, pick_dtype
from codeagent.tui.commands import CommandError
from codeagent.tui.inert import inert


def _prompt_ids(args: Any, folder: Path) -> tuple[list[int], Tokenizer | None]:
    tokenizer = Tokenizer.from_dir(folder) if has_tokenizer(folder) else None
    if args.prompt_ids is not None:
        try:
            ids = [int(part) for part in args.prompt_ids.split(",") if part.strip()]
        except ValueError as err:
            raise CommandError(f"--prompt-ids takes comma-separated integers: {err}") from err
        if not ids:
            raise CommandError("--prompt-ids is empty")
        return ids, tokenizer
    if tokenizer is None:
        raise CommandError(f"{folder} has no tokenizer.json; pass --prompt-ids instead of --prompt")
    return tokenizer.encode(args.prompt), tokenizer


def generate(args: Any, config: Config) -> int:
    del config
    try:
        folder = resolve_model(args.model)
        prompt, tokenizer = _prompt_ids(args, folder)
        loaded = load(folder, args.dtype, args.device, args.tp, args.ep, args.cpu_experts, args.pack)
    except LoadError as err:
        raise CommandError(str(err)) from err
    try:
        return _generate(args, folder, loaded, prompt, tokenizer)
    finally:
        loaded.close()


def _generate(args: Any, folder: Path, loaded: Loaded, prompt: list[int], tokenizer: Any) -> int:
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
    engine = build_engine(loaded, eos)
    try:
        result = engine.generate([request])[0]
    except GroupFailed as err:
        raise CommandError(f"the engine failed: {err}") from err
    finally:
        engine.close()
    if watcher:
        watcher.flush()
    text = watcher.text if watcher else None
    decode_tokens = max(len(result.token_ids) - 1, 0)
    report = {
        "model": str(folder),
        "architecture": loaded.checkpoint.architecture,
        "pack": loaded.pack,
        "prompt_tokens": len(prompt),
        "token_ids": result.token_ids,
        "text": text,
        "finish_reason": result.finish_reason,
        "load_s": round(loaded.load_s, 3),
        "prefill_s": round(result.prefill_s, 4),
        "decode_s": round(result.decode_s, 4),
        "decode_tokens_per_s": round(decode_tokens / result.decode_s, 2) if result.decode_s > 0 else None,
        "kernels": kernels_in_use(engine.device),
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
    from codeagent.backend.planning.source import shipped_models
    from codeagent.tui.firstrun import announce_pull

    if args.action == "pull":
        if not args.force:
            refuse_what_cannot_run_here(args.model_id)
        try:
            announce_pull(args.model_id)
        except ValueError as err:
            raise CommandError(str(err)) from None
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
        "released models codeagent knows without a download (sizes estimated from the shipped config.json):"
    )
    lines += [
        f"  {model.model_id}  {model.architecture}  ~{model.parameters / 1e9:.1f}B parameters, "
        f"~{model.stored_bytes / 2**30:.1f} GiB as released, window {model.window:,} tokens"
        + (f"  (alias {', '.join(model.aliases)})" if model.aliases else "")
        for model in shipped_models()
    ]
    lines.append(
        "aliases: " + ", ".join(f"{alias} -> {model_id}" for alias, model_id in sorted(ALIASES.items()))
    )
    print(inert("\n".join(lines)))  # names and folders come from downloaded checkpoints
    return 0


def refuse_what_cannot_run_here(model: str) -> None:
    """``CommandError`` with the memory planner's numbers when ``model`` cannot run on this
    machine (its GPUs, else its memory): from the shipped config, or the Hub's config.json."""
    from codeagent.backend.catalog import remote_config
    from codeagent.backend.loader import ALIASES
    from codeagent.backend.planning.hardware import HardwareError
    from codeagent.backend.planning.refusal import before_pull
    from codeagent.backend.planning.source import shipped_config

    model_id = ALIASES.get(model.lower(), model)
    config = shipped_config(model_id) or (remote_config(model_id) if "/" in model_id else None)
    if config is None:
        return  # nothing to plan from: the pull itself says what is wrong
    try:
        problem = before_pull(model_id, config)
    except HardwareError as err:
        raise CommandError(str(err)) from None
    if problem is not None:
        raise CommandError(f"not downloading: {problem} (--force downloads it anyway)")


def follow_rank(args: Any, config: Config | None) -> int:
    """A rank above 0 under ``torchrun``: load this rank's share and follow rank 0 (same command line)."""
    del config
    from codeagent.backend.distributed.layout import Layout
    from codeagent.backend.distributed.worker import serve_as_follower
    from codeagent.backend.runtime import PACK_WITH_RANKS

    if args.pack is not None:  # rank 0 refuses the same way before it loads
        raise CommandError(PACK_WITH_RANKS)
    try:
        folder = resolve_model(args.model)
        device = pick_device(args.device)
        dtype = pick_dtype(args.dtype, device)
    except LoadError as err:
        raise CommandError(str(err)) from err
    layout = Layout(args.tp, args.ep, int(os.environ["RANK"]))
    return serve_as_follower(folder, dtype, device, layout, int(os.environ.get("LOCAL_RANK", "0")))
