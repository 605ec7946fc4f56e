"""``codeagent`` with no command: check the ground, wire a ``Setup``, run the app.

Mistakes are found before the screen opens and end as one ``codeagent: error:`` line: not a
git repository, no terminal, an unknown session, a model spec that cannot work (scripted and
remote clients are built here; an embedded checkpoint loads inside the app, with progress,
since that can take minutes), a bad ``.codeagent/config.toml``. The settings in effect
(``agent.settings``) go to the app, which shows their notices and lists them in ``/help``.
The session's id is printed on the way out, for ``--resume``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codeagent.agent import gitops
from codeagent.agent.config import Config
from codeagent.agent.loop import Limits
from codeagent.agent.protocol import ModelClient, ModelError
from codeagent.agent.runs import session_model, sessions
from codeagent.tui import mcp_tools, project_settings
from codeagent.tui.app.setup import ClientBuilder, Setup
from codeagent.tui.commands import (
    AGENT_SPECS,
    DEFAULT_MODEL,
    CommandError,
    client_factory,
    model_spec,
    run_config,
)


def launch(args: argparse.Namespace, config: Config) -> int:
    repo = gitops.open_repo(args.cwd.resolve())
    root = repo.work_tree
    resume = _session(args.resume, root) if args.resume is not None else None
    spec = args.model or (session_model(resume) if resume else None) or model_spec(args, config)
    builder = _builder(args, config)
    client = builder(spec, 0) if spec.startswith(AGENT_SPECS) else None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CommandError(
            "the terminal UI needs a terminal; in scripts and CI use 'codeagent fix --task TEXT'"
        )
    settings = project_settings.for_command(args, config, "tui", root)
    config = settings.config  # the user's config with the project's settings merged in
    if spec == DEFAULT_MODEL:  # first run: say what the default model takes and ask, before the screen opens
        _fetch_default(spec)
    limits = Limits(config.limits.max_steps, config.limits.max_tokens, config.limits.max_wall_s)
    with mcp_tools.interactive(config, root) as servers:
        run = run_config(args, settings, limits)
        gitops.refuse_exposed_credentials(repo, run.confinement if run.sandbox else None)
        run.extra_tools = tuple(servers.tools)
        setup = Setup(root, spec, builder, run, client=client, settings=settings)
        from codeagent.tui.app.application import CodeAgentApp  # Textual loads only for the UI

        app = CodeAgentApp(setup, resume=resume)
        code = app.run()
    if app.return_code:  # the app crashed: a bug in codeagent, whose traceback Textual printed
        return 3
    if app.session.run_id:
        print(f"codeagent: session saved; continue it with: codeagent --resume {app.session.run_id}")
    return int(code or 0)


def _fetch_default(spec: str) -> None:
    from codeagent.tui.firstrun import ask_on_terminal, fetch_default

    try:
        fetch_default(spec, ask_on_terminal)
    except ValueError as err:
        raise CommandError(str(err)) from err


def _builder(args: argparse.Namespace, config: Config) -> ClientBuilder:
    def build(spec: str, consumed: int) -> ModelClient:
        try:
            return client_factory(spec, args, config)(consumed)
        except CommandError as err:
            raise ModelError(str(err)) from err

    return build


def _session(run_id: str, root: Path) -> str:
    """The session to resume: ``run_id``, or this repository's latest when it is empty."""
    found = sessions(root)
    if not found:
        raise CommandError(f"no saved sessions for {root}")
    if not run_id:
        return found[0].run_id
    if run_id not in {info.run_id for info in found}:
        recent = ", ".join(info.run_id for info in found[:5])
        raise CommandError(f"no session {run_id!r} for {root}; recent ones: {recent}")
    return run_id
