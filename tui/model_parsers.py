"""The options of the commands that run or size a model in this process: ``generate``,
``serve``, ``plan`` and ``models``. Their handlers (``backend_commands``, ``serve_command``,
``plan_command``) are imported only when they run (``lazy``), so other commands never load
torch. ``cli.build_parser`` adds these subcommands; the parser class is the caller's (its
``error`` turns a mistake into one line).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from codeagent.agent.config import Config
from codeagent.tui.argtypes import add_disk_cache, add_parallel, port, positive_float, positive_int


def add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, metavar="PATH|ID|ALIAS", help="checkpoint folder, cached id or alias"
    )
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="prompt text (needs the checkpoint's tokenizer)")
    prompt.add_argument("--prompt-ids", metavar="1,2,3", help="prompt as token ids")
    parser.add_argument("--max-tokens", type=positive_int, default=64, metavar="N", help="new tokens at most")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K most likely tokens")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass")
    parser.add_argument(
        "--min-p", type=float, default=0.0, metavar="P", help="drop tokens below P x the best"
    )
    parser.add_argument("--seed", type=int, help="random seed for sampling")
    parser.add_argument("--stop", action="append", metavar="TEXT", help="stop at this text (repeatable)")
    parser.add_argument("--stop-token-id", action="append", type=int, metavar="ID", help="stop at this token")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    add_parallel(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=lazy("codeagent.tui.backend_commands", "generate"))


def add_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH|ID|ALIAS",
        help="checkpoint folder, cached id or alias; scripted:FILE replays the replies in a JSONL file",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="clients must send this key, as a bearer token or x-api-key (default $CODEAGENT_API_KEY)",
    )
    parser.add_argument(
        "--served-model-name",
        metavar="NAME",
        help="model id clients use (default: folder name, or a script's file stem)",
    )
    parser.add_argument(
        "--max-output-tokens",
        type=positive_int,
        default=4096,
        metavar="N",
        help="reply length when a request sets none (default 4096)",
    )
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights' dtype")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="device (default: cuda if present)")
    add_parallel(parser)
    parser.add_argument(
        "--kv-cache-gb",
        type=positive_float,
        metavar="GB",
        help="memory for the KV cache (default: the engine's, from free memory)",
    )
    add_disk_cache(parser)
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=256,
        metavar="N",
        help="connections held at once; more get a 503 (default 256)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds an idle keep-alive connection is kept (default 30)",
    )
    parser.add_argument(
        "--grace",
        type=positive_float,
        default=20.0,
        metavar="S",
        help="on SIGTERM or Ctrl-C, seconds requests in flight get to finish (default 20)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per request on stderr")
    parser.set_defaults(handler=lazy("codeagent.tui.serve_command", "serve"))


def add_plan(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, metavar="NAME|DIR", help="alias, model id or checkpoint folder"
    )
    parser.add_argument(
        "--gpus", metavar="NxGPU", help="GPUs to plan for: 4xH100, 8xH200, H100, or a count with --gpu-mem"
    )
    parser.add_argument("--gpu-mem", metavar="SIZE", help="memory per GPU (80G) instead of a GPU name")
    parser.add_argument(
        "--host-mem",
        metavar="SIZE",
        help="host memory, planned for when no GPU is given (default: this machine's)",
    )
    parser.add_argument(
        "--context", metavar="TOKENS", help="context to fit, e.g. 128K (default 128K, or the model's window)"
    )
    parser.add_argument(  # its own dest: args.tp launches ranks in the commands that run models
        "--tp", dest="plan_tp", type=positive_int, metavar="N", help="plan this tensor-parallel size only"
    )
    parser.add_argument("--ep", action="store_true", help="routed experts divided whole among the ranks")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="weights' and KV cache's dtype (default as the runtime: bfloat16)",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.set_defaults(handler=lazy("codeagent.tui.plan_command", "run"))


def add_models(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.add_parser("list", help="models in the local Hugging Face cache and what they need (default)")
    pull = actions.add_parser("pull", help="download a model from the Hugging Face Hub")
    pull.add_argument("model_id", metavar="ID", help="org/name or an alias such as qwen3-coder-30b-a3b")
    pull.add_argument(
        "--force", action="store_true", help="download even when the memory planner says it cannot run here"
    )
    parser.set_defaults(handler=lazy("codeagent.tui.backend_commands", "models"))


def lazy(module: str, name: str) -> Callable[[Any, Config], int]:
    """A handler imported on use, so commands that do not need torch do not load it."""

    def handler(args: Any, config: Config) -> int:
        return int(getattr(importlib.import_module(module), name)(args, config))

    return handler
