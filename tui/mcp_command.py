"""``codeagent mcp``: serve codeagent's tools to another agent over MCP (stdio).

``register`` adds the subcommand (the one call the CLI makes); ``run`` wires it: the
repository (``--repo``, default the current folder: the work tree that holds it, opened and
vetted as every command opens one, else the CLI's one error line and exit 2), the tools'
settings from the config, the sandbox decided as for the agent (``commands.sandbox_consent``:
``--sandbox off`` only with its loud warning), and ``agent.mcp.server`` (imported on use, so
other commands never load the MCP SDK). Where the sandbox cannot run and it was not turned
off, the server still starts; its ``run`` tool then answers with the agent's refusal, and the
same line goes to stderr once; so it does under the Landlock fallback when the repository's git
config holds credentials (``gitops.refuse_exposed_credentials``: Landlock cannot hide them from
commands as bubblewrap does). Nothing but the protocol is written to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from codeagent.agent.config import Config
from codeagent.agent.gitops import WorkflowError, open_repo, refuse_exposed_credentials
from codeagent.agent.run import RunConfig
from codeagent.sandbox.choose import CHOICES as SANDBOX_CHOICES
from codeagent.sandbox.spec import BUBBLEWRAP
from codeagent.tui import commands


def register(sub: argparse._SubParsersAction) -> None:  # what ``add_subparsers`` returns
    parser = sub.add_parser(
        "mcp",
        help="serve codeagent's tools (repo map, search, edit, patch, sandboxed run) to other agents over MCP",
        description="An MCP server on stdin/stdout for one git repository: other agents (Claude Code, Codex) "
        "get codeagent's repo map, search, tolerant edit, patch, and run confined by its sandbox.",
    )
    parser.add_argument(
        "--repo", type=Path, default=Path.cwd(), metavar="PATH", help="git repository (default: current dir)"
    )
    parser.add_argument(
        "--sandbox",
        choices=SANDBOX_CHOICES,
        default=os.environ.get("CODEAGENT_SANDBOX", "on"),
        help="run commands in the bubblewrap sandbox (default on; $CODEAGENT_SANDBOX); "
        "off runs them as you, for code you trust",
    )
    parser.add_argument("--network", action="store_true", help="let sandboxed commands use the network")
    parser.set_defaults(handler=run)


def run(args: Any, config: Config) -> int:
    if not args.repo.is_dir():
        raise commands.CommandError(f"{args.repo} is not a directory")
    repo = open_repo(args.repo)
    root = repo.work_tree
    refusal, confinement = None, BUBBLEWRAP
    try:
        chosen = commands.sandbox_choice(args.sandbox)
        confined, confinement = chosen.confined, chosen.confinement
        refuse_exposed_credentials(repo, confinement if confined else None)
    except (commands.CommandError, WorkflowError) as err:
        confined, refusal = True, str(err)
        print(f"codeagent: warning: the run tool is refused: {refusal}", file=sys.stderr)
    settings = commands.tool_settings(config, None, None)
    run_config = RunConfig(settings, sandbox=confined, network=args.network, confinement=confinement)

    from codeagent.agent.mcp.server import Workspace, serve

    serve(Workspace.open(root, run_config, refusal))
    return 0
