"""``codeagent serve``: load a checkpoint once and serve it over an OpenAI-compatible HTTP API.

The model, its tokenizer and chat template are loaded once; one ``EngineService`` runs the
engine on a background thread and every HTTP request becomes a sequence in its continuous
batch (``backend/server.py``). The server binds 127.0.0.1 unless ``--host`` says otherwise;
a non-loopback address without an API key gets a loud warning on stderr. The key comes from
``--api-key`` or ``$CODEAGENT_API_KEY``. Ctrl-C or SIGTERM stops the server cleanly (exit 0).

Mistakes in the call (a missing model or tokenizer, a CUDA device that is not there, an
address that cannot be bound) are a ``CommandError``: one ``codeagent: error:`` line, exit 2.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import torch

from codeagent.agent.config import Config
from codeagent.backend.chat.serving import ChatModel
from codeagent.backend.client import DTYPES
from codeagent.backend.engine import CacheConfig, Engine
from codeagent.backend.kernels.dispatch import kernels_in_use
from codeagent.backend.loader import LoadError, load_model, resolve_model
from codeagent.backend.server import OpenAIServer, exposure_warning
from codeagent.backend.service import EngineService
from codeagent.tui.commands import CommandError
from codeagent.tui.inert import inert


def _say(message: str) -> None:
    print(f"codeagent: {inert(message)}", file=sys.stderr, flush=True)  # model names come from checkpoints


def _load(args: Any) -> tuple[ChatModel, Engine]:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda was asked for, but torch sees no CUDA device here")
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    try:
        folder = resolve_model(args.model)
        if not (folder / "tokenizer.json").is_file():
            raise CommandError(f"{folder} has no tokenizer.json; serving needs the model's tokenizer")
        loaded = load_model(folder, DTYPES[dtype], device)
    except LoadError as err:
        raise CommandError(str(err)) from err
    model = ChatModel.from_dir(folder, loaded.config, args.served_model_name)
    memory = int(args.kv_cache_gb * 2**30) if args.kv_cache_gb else None
    cache = CacheConfig(memory_bytes=memory)
    return model, Engine(loaded.model, model.tokenizer.eos_token_ids, device, cache=cache)


def _stop_on_sigterm() -> None:
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def serve(args: Any, config: Config) -> int:
    del config
    api_key = args.api_key or os.environ.get("CODEAGENT_API_KEY") or None
    if warning := exposure_warning(args.host, api_key):
        _say(warning)
    model, engine = _load(args)
    service = EngineService(engine)
    try:
        server = OpenAIServer(
            (args.host, args.port),
            model,
            service,
            api_key=api_key,
            max_output_tokens=args.max_output_tokens,
            log_requests=not args.quiet,
        )
    except OSError as err:
        service.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from err
    _stop_on_sigterm()
    _say(
        f"serving {model.name} at {server.url} on {engine.device} ({kernels_in_use(engine.device)}; Ctrl-C stops)"
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        _say("stopping")
    finally:
        server.server_close()
        service.close()
    return 0
