"""``codeagent bench agent-cache``'s flags and handler (``bench/agent_cache.py`` runs it).

Kept apart from the scenario so that parsing the command line imports no torch; the same
flags serve ``python -m codeagent.bench.agent_cache``. A client that cannot be installed (no
node or npm, an install that failed offline) is one ``codeagent: error:`` line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scenario's flags to ``parser``."""
    parser.add_argument("--client", choices=["claude", "codex"], required=True)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--reply-tokens", type=int, default=24, help="cap on each reply (random weights)")
    parser.add_argument("--clients-dir", type=Path, help="where the CLIs are installed (default: the cache)")
    parser.add_argument(
        "--git", action="store_true", help="work in a git repository and edit a file in it between turns"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the client"
    )
    parser.add_argument(
        "--new-sessions", action="store_true", help="start a new session every turn instead of continuing"
    )


def add(sub: argparse._SubParsersAction) -> None:
    """Register ``bench agent-cache`` under ``codeagent bench``."""
    parser = sub.add_parser(
        "agent-cache",
        help="the real Claude Code or Codex driving serve's engine: prompt tokens read from cache per turn",
    )
    arguments(parser)
    parser.add_argument(
        "--output", type=Path, default=Path("bench-agent-cache.json"), help="JSON results file"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, config: object) -> int:
    import sys

    from codeagent.bench.agent_cache import markdown, run
    from codeagent.bench.agent_clients import ClientsMissing
    from codeagent.bench.handlers import BenchError, write_results

    if any("=" not in item for item in args.env):
        raise BenchError("--env takes NAME=VALUE")
    extra_env: dict[str, Any] = dict(item.split("=", 1) for item in args.env)
    try:
        result = run(
            args.client,
            args.turns,
            args.reply_tokens,
            args.clients_dir,
            args.git,
            extra_env,
            args.new_sessions,
        )
    except ClientsMissing as err:
        raise BenchError(str(err)) from err
    print(markdown(result["rows"]), file=sys.stderr)
    return write_results(result, args.output)
