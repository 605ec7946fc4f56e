"""Subcommand handlers: turn parsed arguments and the config into objects and run them.

What they print from a run (its message, branch, files, checkpoint labels) is untrusted and
goes through ``tui.inert``: ``_report`` for ``fix``'s result (its JSON too: ``json.dumps``
escapes C0 controls but leaves DEL, C1 and bidi controls raw, and inert JSON stays the same
JSON), ``undo`` for its listing. The JSON written to ``--output`` is a file, left as is.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from codeagent.agent import gitops, issues
from codeagent.agent.attempts import AttemptPlan
from codeagent.agent.clients import SPEC_PREFIXES, make_client
from codeagent.agent.clients.preflight import endpoint_problem
from codeagent.agent.clients.settings import RemoteSettings
from codeagent.agent.config import Config
from codeagent.agent.fix import ClientFactory, FixOptions, FixResult, resume_fix, start_fix
from codeagent.agent.github import GitHubClient, GitHubError, repo_from_remote, token_from_env
from codeagent.agent.loop import Limits
from codeagent.agent.record import RunState, SessionRecord, load_run
from codeagent.agent.run import RunConfig
from codeagent.agent.settings import Settings
from codeagent.agent.transcript import runs_dir, transcript_path
from codeagent.sandbox.choose import Choice, SandboxUnavailable, choose
from codeagent.tools.base import ToolSettings
from codeagent.tui import mcp_tools, project_settings
from codeagent.tui.headless import ProgressPrinter
from codeagent.tui.inert import inert


class CommandError(Exception):
    """A user-facing problem found while preparing a command (exit code 2)."""


def model_spec(args: Any, config: Config) -> str:
    return args.model or config.model or os.environ.get("CODEAGENT_MODEL") or DEFAULT_MODEL


AGENT_SPECS = SPEC_PREFIXES  # specs the agent side builds; any other is the embedded runtime's
DEFAULT_MODEL = "qwen3-coder-30b-a3b"


def client_factory(spec: str, args: Any, config: Config) -> ClientFactory:
    """Build the client once (a bad spec fails before the repository is touched); the factory
    takes how many replies a resumed run already consumed (only scripted models care)."""
    if not spec.startswith(AGENT_SPECS):
        from codeagent.tui.embedded import embedded_client

        try:
            client = embedded_client(spec, args, DEFAULT_MODEL)
        except ValueError as err:
            raise CommandError(str(err)) from err
        return lambda consumed: client
    key_env = args.api_key_env or config.remote.api_key_env
    settings = {
        "base_url": args.base_url or config.remote.base_url,
        "api_key": os.environ.get(key_env) if key_env else None,
        "context_window": config.remote.context_window,
    }
    first = make_client(spec, **settings)
    refuse_unreachable(spec, first)
    return lambda consumed: first if consumed == 0 else make_client(spec, start=consumed, **settings)


def refuse_unreachable(spec: str, client: object) -> None:
    """``CommandError`` when a provider's endpoint has no key it needs or does not answer
    (``clients.preflight``), before anything is run; scripted models have no endpoint."""
    settings = getattr(client, "settings", None)
    kind = spec.partition(":")[0]
    if isinstance(settings, RemoteSettings) and (problem := endpoint_problem(kind, settings)):
        raise CommandError(problem)


def fix_options(args: Any, settings: Settings, root: Path) -> FixOptions:
    config = settings.config  # the user's config, the project's settings and the flags, merged
    limits = Limits(config.limits.max_steps, config.limits.max_tokens, config.limits.max_wall_s)
    run = run_config(args, settings, limits, repo_map=not args.no_repo_map)
    push = args.push or args.pr
    token = gitops.push_token(os.environ) if push else None
    return FixOptions(root, run, args.allow_dirty, push, args.pr, push_token=token)


def run_config(args: Any, settings: Settings, limits: Limits, repo_map: bool = True) -> RunConfig:
    """How this command's runs are set up: the tools, budgets, mode, confinement, pinned prefix."""
    config = settings.config
    sandbox = sandbox_choice(args.sandbox)
    return RunConfig(
        tool_settings(config, None, args.api_key_env),
        limits,
        settings.mode,
        sandbox.confined,
        args.network,
        repo_map,
        config.context.codebase_share,
        user_memory=settings.user_memory,
        setup_command=settings.setup_command,
        confinement=sandbox.confinement,
    )


def tool_settings(config: Config, test_command: str | None, api_key_env: str | None) -> ToolSettings:
    """The tools' settings from the config; the endpoint's key variable is kept from commands."""
    tools = config.tools
    return ToolSettings(
        test_command=test_command or tools.test_command,
        command_timeout=tools.command_timeout,
        max_output_chars=tools.max_output_chars,
        secret_env_names=(*tools.secret_env_names, *filter(None, [api_key_env or config.remote.api_key_env])),
        repo_map_tokens=tools.repo_map_tokens,
    )


def sandbox_consent(choice: str) -> bool:
    """True to confine; False only when the user said so, and then loudly."""
    return sandbox_choice(choice).confined


def sandbox_choice(choice: str) -> Choice:
    """The confinement for ``--sandbox`` (``sandbox.choose``): bubblewrap, else the Landlock
    fallback (said on stderr), or none only when the user said so, and then loudly;
    ``CommandError`` where the choice cannot run."""
    if choice == "off":
        print(
            "codeagent: warning: the sandbox is off (--sandbox off): the model's commands run as you, "
            "with your files and network",
            file=sys.stderr,
        )
    try:
        chosen = choose(choice)
    except SandboxUnavailable as err:
        raise CommandError(
            f"the sandbox cannot run here ({err}); install bubblewrap, or pass --sandbox off "
            "to run the model's commands unconfined, only for code you trust"
        ) from err
    if chosen.fallback_reason:
        print(
            f"codeagent: {chosen.fallback_reason}; the model's commands run confined by {chosen.confinement} "
            "instead (no new top-level files in the repository; a .git/config holding credentials is refused: see the README)",
            file=sys.stderr,
        )
    return chosen


def github_client(args: Any, root: Path) -> GitHubClient:
    repo = args.repo or os.environ.get("GITHUB_REPOSITORY") or repo_from_remote(root)
    if not repo:
        raise CommandError(
            "cannot tell the GitHub repository: pass --repo OWNER/NAME or set GITHUB_REPOSITORY"
        )
    return GitHubClient(
        api_url=os.environ.get("GITHUB_API_URL") or "https://api.github.com",
        token=token_from_env(os.environ),
        repo=repo,
    )


def read_issue(args: Any, root: Path) -> issues.IssueSpec:
    if args.issue is not None:
        try:
            return issues.from_github(args.issue, github_client(args, root))
        except GitHubError as err:
            raise CommandError(f"issue #{args.issue}: {err}") from err
    try:
        if args.issue_file is not None:
            if not args.issue_file.is_file():
                raise CommandError(f"issue file {args.issue_file} does not exist")
            return issues.from_file(args.issue_file)
        if args.task is not None:
            return issues.from_text(args.task)
    except issues.IssueError as err:
        raise CommandError(str(err)) from err
    raise CommandError("say what to fix: --issue N, --issue-file PATH or --task TEXT (or --resume RUN_ID)")


def fix(args: Any, config: Config) -> int:
    root = args.cwd.resolve()
    if not root.is_dir():
        raise CommandError(f"{args.cwd} is not a directory")
    repo = _load(args.resume).record.root if args.resume else gitops.open_repo(root).work_tree
    settings = project_settings.for_command(args, config, "fix", repo)
    project_settings.warn(settings)
    config = settings.config
    options = fix_options(args, settings, root)
    with mcp_tools.headless(config, options.root) as servers:
        options.run.extra_tools = tuple(servers.tools)
        return _fix(args, config, options)


def _fix(args: Any, config: Config, options: FixOptions) -> int:
    printer = ProgressPrinter(verbose=args.verbose)
    sink = (lambda _event: None) if args.quiet else printer
    if args.resume:
        if args.attempts > 1:
            raise CommandError("--resume continues one run; a run with --attempts starts again")
        state = _load(args.resume)
        if isinstance(state.record, SessionRecord):
            raise CommandError(
                f"{args.resume} is a terminal UI session; continue it with: codeagent --resume {args.resume}"
            )
        make = client_factory(args.model or state.record.model, args, config)
        result = resume_fix(state, make, options, sink)
    else:
        spec = model_spec(args, config)
        options.attempts = fix_attempts(spec, args, config)  # None for one attempt
        make = client_factory(spec, args, config) if options.attempts is None else options.attempts.first
        issue = read_issue(args, options.root)
        if options.pr:
            options.pull_requests = github_client(args, options.root)
        result = start_fix(issue, spec, make, options, sink)
    _report(result, args)
    return result.exit_code


def fix_attempts(spec: str, args: Any, config: Config) -> AttemptPlan | None:
    """The attempts' clients for ``--attempts N`` (``tui.attempt_clients``); None for one."""
    from codeagent.tui import attempt_clients as ac

    if args.attempts <= 1:
        return None
    if spec.startswith("scripted:"):
        return ac.plan(args.attempts, args.attempt_temperature, ac.scripted(ac.scripts(spec, args.attempts)))
    shared = client_factory(spec, args, config)(0)
    settings = ac.remote_settings(args, config)
    return ac.plan(args.attempts, args.attempt_temperature, ac.sampled(shared, spec, settings))


def _load(run_id: str) -> RunState:
    path = transcript_path(run_id)
    if not path.is_file():
        known = sorted(p.name for p in runs_dir().glob("*") if p.is_dir())[-5:]
        hint = f"; recent runs: {', '.join(known)}" if known else ""
        raise CommandError(f"no run {run_id!r} in {runs_dir()}{hint}")
    try:
        return load_run(path)
    except ValueError as err:
        raise CommandError(f"run {run_id!r} cannot be resumed: {err}") from err


def _report(result: FixResult, args: Any) -> None:
    data = result.as_dict()
    if args.output:
        args.output.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(inert(json.dumps(data, indent=2, ensure_ascii=False)))
        return
    lines = [f"{result.status}: {result.message}"]
    for label, value in (
        ("branch", result.branch),
        ("commit", result.commit),
        ("transcript", result.transcript),
    ):
        if value:
            lines.append(f"  {label}: {value}")
    if result.files_changed:
        lines.append(f"  files: {', '.join(result.files_changed)}")
    lines.append(f"  tests: before {_tests(result.tests_before)}; after {_tests(result.tests_after)}")
    tokens = result.tokens
    lines.append(
        f"  {result.steps} steps, {tokens.get('prompt', 0)} prompt tokens ({tokens.get('cached', 0)} cached), "
        f"{tokens.get('completion', 0)} completion tokens, {result.wall_time_s:.1f}s"
    )
    print(inert("\n".join(lines)))


def _tests(summary: dict[str, Any]) -> str:
    if not summary:
        return "not run"
    if not summary.get("detected"):
        return "no test command found"
    return f"{summary['passed']} passed, {summary['failed']} failed, {summary['errors']} errors"


def undo(args: Any, config: Config) -> int:
    from codeagent.sandbox.checkpoint import Checkpoints, default_store

    root = args.cwd.resolve()
    if not root.is_dir():
        raise CommandError(f"{args.cwd} is not a directory")
    if not (default_store(root) / "HEAD").exists():
        print(inert(f"no checkpoints for {root}"))
        return 1
    checkpoints = Checkpoints(root)
    if args.list:
        lines = [f"{commit[:12]}  {label}" for commit, label in checkpoints.history()]
        if lines:
            print(inert("\n".join(lines)))
        return 0
    undone = checkpoints.undo()
    if undone is None:
        print("nothing to undo: the workspace matches its latest checkpoint")
        return 1
    lines = [f"restored the checkpoint {undone.commit[:12]} ({undone.label})"]
    lines += [f"  {rel}" for rel in undone.changed]
    print(inert("\n".join(lines)))
    return 0
