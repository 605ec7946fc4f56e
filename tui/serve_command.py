"""``codeagent serve``: load a checkpoint once and serve it over HTTP: OpenAI chat and text
completions, OpenAI Responses and Anthropic Messages (``backend/serving/``).

The model, its tokenizer and chat template are loaded once, by the runtime's factory
(``backend/runtime.py``); its ``EngineService`` runs the engine on a background thread and
every HTTP request becomes a sequence in its continuous batch (``backend/serving/``). The server binds 127.0.0.1 unless ``--host`` says otherwise;
a non-loopback address without an API key gets a loud warning on stderr. The key comes from
``--api-key`` or ``$CODEAGENT_API_KEY``. Ctrl-C or SIGTERM stops the server cleanly (exit 0):
it stops accepting, gives requests in flight ``--grace`` seconds to finish and ends the rest
with their protocol's error event. ``--max-connections`` bounds the connections held (a 503
past it) and ``--idle-timeout`` closes idle keep-alive connections.
With ``--tp N`` the model is split across N ranks; if one dies, the requests in flight fail
with the reason and the server stops with exit status 1 (it never hangs on the lost rank).

The KV cache keeps a disk tier by default, in the folder the embedded agent uses
(``$XDG_CACHE_HOME/codeagent/kv``, one subfolder per model, dtype, device and packing:
``backend/cache/disk.py``), so a restarted server, or the agent on the same model, answers a
prompt it has seen with its blocks read from disk instead of computed. ``--disk-cache DIR``
moves it, ``--no-disk-cache`` turns it off; the startup line names the folder or says "off".
Replies the server generated keep the model's own token ids for the next turn (the turn
memory, ``backend/chat/continuity.py``): an assistant message whose exact text the server
generated and still remembers gets those ids in any request, every other text is encoded as
text. The memory is in-process only, so after a restart the same multi-turn request can get
other ids (its earlier replies encoded from their text), and its cache hit, from disk too,
stops at the first block where they differ.

``--model scripted:FILE`` serves a script instead of a checkpoint (``backend/scripted_service.py``):
request i gets reply i of the JSONL file FILE, in the built-in Qwen3 chat format over a byte
tokenizer, so real clients can be run deterministically; the loading, device and cache
options do not apply to it. A missing or malformed FILE is a ``CommandError``.

Mistakes in the call (a missing model or tokenizer, a CUDA device that is not there, an
address that cannot be bound) are a ``CommandError``: one ``codeagent: error:`` line, exit 2.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from codeagent.agent.config import Config
from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.cache.disk import default_root as default_disk_root
from codeagent.backend.loader import LoadError, resolve_model
from codeagent.backend.runtime import Runtime, RuntimeConfig, open_runtime
from codeagent.backend.scripted_service import PREFIX, ScriptedRuntime, ScriptError, open_scripted
from codeagent.backend.serving.server import OpenAIServer, exposure_warning
from codeagent.tui.commands import CommandError
from codeagent.tui.inert import inert


def _say(message: str) -> None:
    print(f"codeagent: {inert(message)}", file=sys.stderr, flush=True)  # model names come from checkpoints


def cache_config(args: Any) -> CacheConfig:
    """The KV cache ``serve`` asks for: ``--kv-cache-gb`` of memory and the disk tier (default on).
    A ``--disk-cache`` folder that cannot be made is a ``CommandError``; the default folder, a
    warning, and the server runs without the tier."""
    memory = int(args.kv_cache_gb * 2**30) if args.kv_cache_gb else None
    folder = None if args.no_disk_cache else (args.disk_cache or default_disk_root())
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            why = f"cannot use {folder} for the KV disk cache: {err.strerror or err}"
            if args.disk_cache is not None:
                raise CommandError(f"{why} (--no-disk-cache turns it off)") from err
            _say(f"{why}; serving without it")
            folder = None
    return CacheConfig(memory_bytes=memory, disk_folder=folder)


def _open(args: Any) -> Runtime | ScriptedRuntime:
    if args.model.startswith(PREFIX):
        try:
            return open_scripted(Path(args.model.removeprefix(PREFIX)), args.served_model_name)
        except ScriptError as err:
            raise CommandError(str(err)) from err
    settings = RuntimeConfig(
        args.dtype,
        args.device,
        cache_config(args),
        args.served_model_name,
        tp=args.tp,
        ep=args.ep,
        cpu_experts=args.cpu_experts,
        pack=args.pack,
    )
    try:
        return open_runtime(resolve_model(args.model), settings)
    except LoadError as err:
        raise CommandError(str(err)) from err


def _described(runtime: Runtime | ScriptedRuntime) -> str:
    """Where the replies come from, for the startup line."""
    if isinstance(runtime, ScriptedRuntime):
        return f"from the script {runtime.path} ({len(runtime.service.replies)} replies; Ctrl-C stops)"
    disk = runtime.engine.disk
    where = disk.folder if disk is not None else "off"
    return f"on {runtime.device} ({runtime.kernels}; KV disk cache {where}; Ctrl-C stops)"


def _stop_on_sigterm() -> None:
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def serve(args: Any, config: Config) -> int:
    del config
    api_key = args.api_key or os.environ.get("CODEAGENT_API_KEY") or None
    if warning := exposure_warning(args.host, api_key):
        _say(warning)
    runtime = _open(args)
    try:
        server = OpenAIServer(
            (args.host, args.port),
            runtime.model,
            runtime.service,
            api_key=api_key,
            max_output_tokens=args.max_output_tokens,
            log_requests=not args.quiet,
            max_connections=args.max_connections,
            idle_timeout_s=args.idle_timeout,
            grace_s=args.grace,
        )
    except OSError as err:
        runtime.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from err
    _stop_on_sigterm()
    broken: list[str] = []

    def stop_serving(why: str) -> None:  # from the engine's thread: a rank is gone
        broken.append(why)
        threading.Thread(target=server.shutdown, daemon=True).start()

    runtime.service.on_broken = stop_serving
    _say(f"serving {runtime.model.name} at {server.url} {_described(runtime)}")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        _say("stopping")
    finally:
        server.server_close()
        runtime.close()
    if broken:
        _say(f"stopped: the engine is down ({broken[0]})")
        return 1
    return 0
