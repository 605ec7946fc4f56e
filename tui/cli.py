"""The ``codeagent`` command: argument parsing, the config, and each subcommand handed to its
handler (``commands``: ``fix``, ``undo``; ``eval_command``; ``mcp_command``; ``model_parsers``
adds ``generate``, ``serve``, ``plan`` and ``models``, whose handlers are imported when they run
so that other commands never load torch; ``bench.command`` registers its own); without a
command, the terminal UI (``app.launch``).
Runs are opened in one place, ``agent/run.py``, whichever front end asks.

User mistakes (unknown flag, missing repository, bad config, unknown model) print one line
``codeagent: error: ...`` and exit 2 (with ``--json`` in the arguments, also the result object
``{"status": "error", "message": ..., "exit_code": 2}`` on stdout; Ctrl-C: status
``interrupted``, 130); only bugs in codeagent show a traceback: on stderr, then the line
``codeagent: internal error ...`` and, with ``--json``, the object with status ``error``, exit 3.
That line is inert (``tui.inert``): errors quote file names, git's and GitHub's words; so is
the traceback of a bug (``main``'s, and ``sys.excepthook``'s for one outside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from codeagent.agent.config import Config, ConfigError, load_config
from codeagent.agent.gitops import WorkflowError
from codeagent.agent.project import ProjectConfigError
from codeagent.agent.protocol import ModelError
from codeagent.bench import command as bench_command
from codeagent.sandbox.choose import CHOICES as SANDBOX_CHOICES
from codeagent.sandbox.git import UnsafeRepository
from codeagent.tui import commands, eval_command, mcp_command, model_parsers
from codeagent.tui.argtypes import (
    add_budgets,
    add_parallel,
    positive_int,
)
from codeagent.tui.attempt_clients import attempt_flags
from codeagent.tui.inert import inert
from codeagent.tui.model_parsers import lazy


class UsageError(Exception):
    """A mistake in how codeagent was called (exit code 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="codeagent",
        description="A coding agent with its own model runtime. With no command, it opens the terminal UI "
        "in the repository you are in.",
    )
    parser.add_argument("--version", action="version", version=f"codeagent {version('codeagent')}")
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="config file (default ~/.config/codeagent/config.toml)"
    )
    _add_interactive(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _add_fix(
        sub.add_parser(
            "fix",
            help="fix an issue headlessly: branch, tests, commit, JSON result",
            description="Fix an issue on a new branch, run the tests, commit, and report.",
            epilog="exit codes: 0 resolved and tests pass, 1 no acceptable fix, 2 usage or configuration "
            "error, 3 internal or model error, 130 interrupted (continue with --resume RUN_ID)",
        )
    )
    model_parsers.add_generate(sub.add_parser("generate", help="generate text with the embedded runtime"))
    model_parsers.add_serve(
        sub.add_parser("serve", help="serve a model over OpenAI- and Anthropic-compatible HTTP APIs")
    )
    model_parsers.add_models(sub.add_parser("models", help="list local models, or pull one"))
    model_parsers.add_plan(
        sub.add_parser(
            "plan",
            help="what a model needs per GPU, and the smallest layout that fits (before a download)",
            description="Plan a model's memory from its config.json (shipped with codeagent for the released "
            "models) or a checkpoint folder: weights by format, KV cache per token, workspace, per rank of "
            "each tensor/expert-parallel layout, the longest context that fits, and a verdict.",
            epilog="exit codes: 0 a layout fits, 1 none does, 2 usage error",
        )
    )
    undo = sub.add_parser("undo", help="undo the agent's last change to the files, exactly")
    undo.add_argument("-C", "--cwd", type=Path, default=Path.cwd(), help="repository (default: current dir)")
    undo.add_argument("--list", action="store_true", help="list the checkpoints instead")
    undo.set_defaults(handler=commands.undo)
    bench_command.register(sub)
    mcp_command.register(sub)
    evaluate = sub.add_parser(
        "eval",
        help="run the SWE-style task set (or a SWE-bench file) and report",
        description="Solve and grade each task in fresh workspaces. --model gold applies the gold patches, "
        "--model empty changes nothing (both validate a task set); any other model runs the agent.",
    )
    _add_model_flags(evaluate)
    eval_command.add_arguments(evaluate, Parser)
    evaluate.set_defaults(handler=lazy("codeagent.tui.eval_command", "run"))
    return parser


def _add_interactive(parser: argparse.ArgumentParser) -> None:
    """Flags of the terminal UI (no command); the model flags follow in their own group."""
    group = parser.add_argument_group("terminal UI (no command)")
    group.add_argument(
        "--mode",
        choices=["read-only", "ask", "auto-edit", "full-auto"],
        help="what runs without approval (default: your config's mode, else ask: every edit and command "
        "waits for you; a project's .codeagent/config.toml may only make it stricter)",
    )
    group.add_argument(
        "--resume", nargs="?", const="", metavar="ID", help="continue a session (default: the latest here)"
    )
    group.add_argument("-C", "--cwd", type=Path, default=Path.cwd(), help="repository (default: current dir)")
    group.add_argument(
        "--sandbox",
        choices=SANDBOX_CHOICES,
        default=os.environ.get("CODEAGENT_SANDBOX", "on"),
        help="run the model's commands in the sandbox (default on: bubblewrap, else Landlock where namespaces "
        "are unavailable; bubblewrap or landlock to insist on one; $CODEAGENT_SANDBOX)",
    )
    group.add_argument("--network", action="store_true", help="let sandboxed commands use the network")
    _add_model_flags(parser)


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        metavar="SPEC",
        help="checkpoint folder, cached model id or alias (embedded runtime; default qwen3-coder-30b-a3b), "
        "anthropic:NAME, openai:NAME, deepseek:NAME, ollama:NAME, local:URL, remote:NAME (any "
        "OpenAI-compatible endpoint) or scripted:FILE",
    )
    group.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="embedded weights' dtype (default bfloat16)",
    )
    group.add_argument(
        "--max-output-tokens",
        type=positive_int,
        default=4096,
        metavar="N",
        help="tokens the embedded model may write per reply (default 4096)",
    )
    group.add_argument(
        "--device", choices=["cpu", "cuda"], help="embedded runtime device (default: cuda if present)"
    )
    add_parallel(group)
    group.add_argument(
        "--base-url", metavar="URL", help="the model API's base URL (default: the provider's own)"
    )
    group.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="variable holding the API key (default: the provider's, e.g. ANTHROPIC_API_KEY)",
    )


def _add_fix(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--issue", type=int, metavar="N", help="GitHub issue number to fix")
    source.add_argument(
        "--issue-file", type=Path, metavar="PATH", help="issue text in a Markdown or JSON file"
    )
    source.add_argument("--task", metavar="TEXT", help="the task, as text")
    source.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run")
    parser.add_argument(
        "-C", "--cwd", type=Path, default=Path.cwd(), help="repository (default: current dir)"
    )
    parser.add_argument(
        "--repo", metavar="OWNER/NAME", help="GitHub repository (default $GITHUB_REPOSITORY or origin)"
    )
    _add_model_flags(parser)
    add_budgets(parser.add_argument_group("budgets"), "wall time at most")
    parser.add_argument("--test-command", metavar="COMMAND", help="how to run the tests (default: detected)")
    parser.add_argument("--no-repo-map", action="store_true", help="leave the repo map out of the prompt")
    parser.add_argument(
        "--allow-dirty", action="store_true", help="start on a dirty tree (changes kept aside)"
    )
    parser.add_argument(
        "--mode",
        choices=["read-only", "ask", "auto-edit", "full-auto"],
        help="what runs without approval (default full-auto; a project's .codeagent/config.toml may only "
        "make it stricter); headless, anything that would ask is refused",
    )
    parser.add_argument(
        "--sandbox",
        choices=SANDBOX_CHOICES,
        default=os.environ.get("CODEAGENT_SANDBOX", "on"),
        help="run the model's commands in the sandbox (default on: bubblewrap, else Landlock where namespaces "
        "are unavailable; bubblewrap or landlock to insist on one; $CODEAGENT_SANDBOX); "
        "off runs them as you, for code you trust",
    )
    parser.add_argument("--network", action="store_true", help="let sandboxed commands use the network")
    attempt_flags(parser)
    parser.add_argument("--push", action="store_true", help="push the branch when resolved")
    parser.add_argument("--pr", action="store_true", help="push and open a pull request when resolved")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the JSON result to FILE")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="longer progress lines")
    parser.set_defaults(handler=commands.fix)


def main(argv: Sequence[str] | None = None) -> int:
    sys.excepthook = _inert_traceback
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(argv)
    except (
        UsageError,
        ConfigError,
        ProjectConfigError,
        WorkflowError,
        commands.CommandError,
        bench_command.BenchError,
        UnsafeRepository,
    ) as err:
        return _fail(str(err), argv)
    except ModelError as err:
        return _fail(f"model: {err}", argv)
    except KeyboardInterrupt:
        return _fail("interrupted", argv, 130)
    except Exception as err:  # a bug: its traceback on stderr, and still the one result line (exit 3)
        _inert_traceback(type(err), err, err.__traceback__)
        return _fail(
            f"internal error (a bug in codeagent; traceback above): {type(err).__name__}: {err}", argv, 3
        )


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "tp", 1) > 1 and os.environ.get("RANK", "0") != "0" and "WORLD_SIZE" in os.environ:
        return lazy("codeagent.tui.backend_commands", "follow_rank")(args, None)  # torchrun's rank > 0
    config = load_config(args.config)
    if args.command is None:
        return interactive(args, config)
    return int(args.handler(args, config))


def interactive(args: Any, config: Config) -> int:
    from codeagent.tui.app.launch import launch

    return launch(args, config)


def _inert_traceback(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    """A bug's traceback, as Python prints it but inert: its messages quote files and git."""
    print(inert("".join(traceback.format_exception(kind, error, trace))), end="", file=sys.stderr)


def _fail(message: str, argv: list[str], code: int = 2) -> int:
    """One line on stderr; with --json, the result object on stdout too (usage errors included:
    a handler that ran prints its own)."""
    message = inert(message)  # messages quote files, git, issues
    print(f"codeagent: {'error: ' if code == 2 else ''}{message}", file=sys.stderr)
    if "--json" in argv:
        status = "interrupted" if code == 130 else "error"
        print(json.dumps({"status": status, "message": message, "exit_code": code}))
    return code


if __name__ == "__main__":
    sys.exit(main())
