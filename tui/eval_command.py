"""``codeagent eval``: run a task set and report; ``codeagent eval compare A B``.

The wiring of the eval harness: tasks from ``--tasks``/``--dataset`` (default: the built-in
set), a solver from ``--model`` (``gold``, ``empty``, or any agent model spec), the sandbox
decision, budgets, then ``evals.runner``. The embedded model is loaded once and shared by
every worker: its client is safe to call from many threads, and the engine service batches
their requests (continuous batching); scripted models get a fresh client per task
(``scripted:FILE`` replays FILE for every task, ``scripted:DIR`` replays
``DIR/<instance_id>.jsonl``); remote clients are made per task, after one check of the
endpoint (``clients.preflight``: the key, and that it answers), made before the output folder
or any task's workspace is touched. The arguments are declared here and imported by
``cli.py``, so this module imports nothing heavy at the top. Task ids and messages come from
the dataset and the runs: what is printed goes through ``tui.inert``, the progress line
included (its task ids made inert before ``evals.progress`` draws them; the evals do not
import the UI).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from codeagent.sandbox.choose import CHOICES as SANDBOX_CHOICES
from codeagent.tui.argtypes import add_budgets, positive_float, positive_int
from codeagent.tui.attempt_clients import attempt_flags
from codeagent.tui.inert import inert

DEFAULT_OUTPUT = Path("eval-results")


def add_arguments(parser: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--tasks", type=Path, metavar="PATH", help="task set: folder or .jsonl (default: built-in)"
    )
    source.add_argument("--dataset", type=Path, metavar="FILE", help="SWE-bench-format .jsonl/.json file")
    parser.add_argument("--repos", type=Path, metavar="DIR", help="where repositories without repo_path are")
    parser.add_argument("--setup", metavar="CMD", help="environment setup for tasks that have none")
    parser.add_argument(
        "--parallel", type=positive_int, default=1, metavar="N", help="tasks at once (default 1)"
    )
    attempt_flags(parser)
    parser.add_argument("--shard", type=_shard, metavar="I/N", help="run the I-th of N deterministic shards")
    parser.add_argument("--limit", type=positive_int, metavar="K", help="run at most K tasks")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help="results folder (default eval-results)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --output, skipping finished tasks"
    )
    budgets = parser.add_argument_group("per-task budgets")
    add_budgets(budgets, "agent wall time at most")
    budgets.add_argument(
        "--test-timeout",
        type=positive_float,
        default=600.0,
        metavar="SECONDS",
        help="grading tests (default 600)",
    )
    parser.add_argument("--no-repo-map", action="store_true", help="leave the repo map out of the prompt")
    parser.add_argument(
        "--sandbox",
        choices=SANDBOX_CHOICES,
        default=os.environ.get("CODEAGENT_SANDBOX", "on"),
        help="run setup, the agent's commands and the tests in the sandbox (default on: bubblewrap, else "
        "Landlock where namespaces are unavailable; bubblewrap or landlock to insist on one; $CODEAGENT_SANDBOX)",
    )
    parser.add_argument("--network", action="store_true", help="let sandboxed commands use the network")
    parser.add_argument("--keep-workspaces", action="store_true", help="keep each task's workspaces")
    parser.add_argument("--fail-under", type=float, metavar="PCT", help="exit 1 when fewer resolve (in %%)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    actions = parser.add_subparsers(dest="eval_action", metavar="ACTION", parser_class=parser_class)
    compare = actions.add_parser("compare", help="what changed between two runs")
    compare.add_argument("run_a", type=Path, metavar="A", help="output folder of the first run")
    compare.add_argument("run_b", type=Path, metavar="B", help="output folder of the second run")


def run(args: Any, config: Any) -> int:
    from codeagent.evals.compare import CompareError, compare
    from codeagent.evals.runner import EvalError
    from codeagent.evals.task import TaskError
    from codeagent.tui.commands import CommandError

    try:
        if args.eval_action == "compare":
            print(inert(compare(args.run_a, args.run_b)))
            return 0
        return _evaluate(args, config)
    except (TaskError, EvalError, CompareError) as err:
        raise CommandError(str(err)) from err


def _evaluate(args: Any, config: Any) -> int:
    from codeagent.evals.loader import BUILTIN, load_tasks
    from codeagent.evals.progress import Progress
    from codeagent.evals.reports import read_reports
    from codeagent.evals.runner import EvalInterrupted, EvalOptions, prepare, run_eval
    from codeagent.evals.selection import select
    from codeagent.tui.commands import CommandError, model_spec, sandbox_choice

    path = args.dataset or args.tasks or BUILTIN
    if args.repos is not None and not args.repos.is_dir():
        raise CommandError(f"--repos {args.repos} is not a folder")
    chosen = select(load_tasks(path, setup=args.setup), args.shard, args.limit)
    sandbox = sandbox_choice(args.sandbox)  # bubblewrap, else the Landlock fallback, or none by consent
    settings = _settings(args, config, sandbox.confined, sandbox.confinement)
    spec = model_spec(args, config)
    meta = {
        "source": str(path),
        "shard": "/".join(map(str, args.shard)) if args.shard else None,
        "limit": args.limit,
        "attempts": args.attempts,
        "confinement": sandbox.confinement,
    }
    options = EvalOptions(
        args.output.resolve(), args.parallel, args.resume, args.repos, args.keep_workspaces, settings, meta
    )
    solver = _solver(spec, args, config, settings, options.output)
    todo = prepare(chosen, solver, options)
    earlier = {task.instance_id for task in chosen} - {task.instance_id for task in todo}
    finished = [report for iid, report in read_reports(options.output).items() if iid in earlier]
    progress = Progress(len(chosen), finished, enabled=not args.quiet)
    progress.begin()
    try:
        wall = run_eval(todo, solver, options, _inert_ids(progress))
    except EvalInterrupted:
        progress.close()
        _finish(options.output, chosen, solver.name, None, sandbox.confinement)
        print(
            f"codeagent: interrupted; finished tasks are kept; continue with --resume --output {args.output}",
            file=sys.stderr,
        )
        return 130
    progress.close()
    summary = _finish(options.output, chosen, solver.name, wall, sandbox.confinement)
    if args.fail_under is not None and summary["resolved_pct"] < args.fail_under:
        return 1
    return 0


def _inert_ids(progress: Any) -> Any:
    """``progress`` given each report with its dataset-given task id made inert."""
    return lambda report: progress(dataclasses.replace(report, instance_id=inert(report.instance_id)))


def _finish(
    output: Path, chosen: list[Any], model: str, wall: float | None, confinement: str
) -> dict[str, Any]:
    from codeagent.evals.reports import read_reports, write_json, write_predictions
    from codeagent.evals.summary import summarize, table, task_table

    ids = {task.instance_id for task in chosen}
    reports = [r for r in read_reports(output).values() if r.instance_id in ids]
    summary = summarize(reports, model, wall) | {"confinement": confinement}
    write_json(output / "summary.json", summary)
    text = table(summary) + f"\n\ncommands confined by: {confinement}"
    (output / "summary.md").write_text(
        f"# Eval summary\n\n{text}\n\n## Tasks\n\n{task_table(reports)}\n", encoding="utf-8"
    )
    write_predictions(output, reports)
    print(inert(text))
    print(f"\nresults in {output}", file=sys.stderr)
    return summary


def _settings(args: Any, config: Any, sandbox: bool, confinement: str) -> Any:
    from codeagent.evals.environment import RunSettings
    from codeagent.tools.base import ToolSettings

    tools = config.tools
    key_env = args.api_key_env or config.remote.api_key_env
    return RunSettings(
        sandbox=sandbox,
        confinement=confinement,
        network=args.network,
        test_timeout_s=args.test_timeout,
        tools=ToolSettings(
            test_command=tools.test_command,
            command_timeout=tools.command_timeout,
            max_output_chars=tools.max_output_chars,
            secret_env_names=(*tools.secret_env_names, *filter(None, [key_env])),
            repo_map_tokens=tools.repo_map_tokens,
        ),
    )


def _solver(spec: str, args: Any, config: Any, settings: Any, output: Path) -> Any:
    from codeagent.agent.loop import Limits
    from codeagent.evals.solvers import AgentSolver, EmptySolver, GoldSolver

    if spec == "gold":
        return GoldSolver()
    if spec == "empty":
        return EmptySolver()
    limits = Limits(
        max_steps=args.max_steps or config.limits.max_steps,
        max_tokens=args.max_tokens or config.limits.max_tokens,
        max_wall_s=args.max_time or config.limits.max_wall_s,
    )
    transcripts = output / "transcripts"
    if args.attempts > 1:
        return _attempts_solver(
            spec,
            args,
            config,
            AgentSolver(spec, _unused, settings, limits, not args.no_repo_map, transcripts),
        )
    client_for = _clients(spec, args, config)
    return AgentSolver(spec, client_for, settings, limits, not args.no_repo_map, transcripts)


def _attempts_solver(spec: str, args: Any, config: Any, agent: Any) -> Any:
    """``--attempts N``: N agents per task (``evals.attempts``), clients from ``tui.attempt_clients``."""
    from codeagent.agent.attempts import sampling_plan
    from codeagent.evals.attempts import AttemptsSolver
    from codeagent.tui import attempt_clients as ac

    sampling = sampling_plan(args.attempts, args.attempt_temperature)
    target = Path(spec.removeprefix("scripted:")).expanduser()
    if spec.startswith("scripted:") and target.is_dir():
        return AttemptsSolver(
            agent, args.attempts, lambda task, n: ac.eval_script(target, task.instance_id, n), sampling
        )
    if spec.startswith("scripted:"):
        make = ac.scripted(ac.scripts(spec, args.attempts))
        return AttemptsSolver(agent, args.attempts, lambda task, n: make(sampling[n - 1], n), sampling)
    per_task, settings = _clients(spec, args, config), ac.remote_settings(args, config)

    def client_for(task: Any, number: int) -> Any:
        return ac.sampled(per_task(task), spec, settings)(sampling[number - 1], number)

    return AttemptsSolver(agent, args.attempts, client_for, sampling)


def _unused(task: Any) -> Any:
    raise AssertionError("with --attempts each attempt's client comes from the attempts solver")


def _clients(spec: str, args: Any, config: Any) -> Any:
    from codeagent.agent.clients import make_client
    from codeagent.agent.protocol import ModelError
    from codeagent.tui.commands import AGENT_SPECS, DEFAULT_MODEL, CommandError, refuse_unreachable

    if spec.startswith("scripted:"):
        folder = Path(spec.removeprefix("scripted:")).expanduser()
        if not folder.exists():
            raise CommandError(f"script {folder} does not exist")
        if not folder.is_dir():
            return lambda task: make_client(spec)

        def per_task(task: Any) -> Any:
            script = folder / f"{task.instance_id}.jsonl"
            if not script.is_file():
                raise ModelError(f"no script for {task.instance_id} in {folder}")
            return make_client(f"scripted:{script}")

        return per_task
    if spec.startswith(AGENT_SPECS):
        key_env = args.api_key_env or config.remote.api_key_env
        settings = {
            "base_url": args.base_url or config.remote.base_url,
            "api_key": os.environ.get(key_env) if key_env else None,
            "context_window": config.remote.context_window,
        }
        # a bad spec, a missing key or an endpoint that does not answer fails before any task starts
        refuse_unreachable(spec, make_client(spec, **settings))
        return lambda task: make_client(spec, **settings)
    from codeagent.tui.embedded import embedded_client

    started = time.monotonic()
    print(f"codeagent: loading model {spec}", file=sys.stderr)
    try:
        shared = embedded_client(spec, args, DEFAULT_MODEL)
    except ValueError as err:
        raise CommandError(str(err)) from err
    print(
        f"codeagent: model loaded once in {time.monotonic() - started:.1f}s, shared by every task",
        file=sys.stderr,
    )
    return lambda task: shared


def _shard(text: str) -> tuple[int, int]:
    from codeagent.evals.selection import SelectionError, parse_shard

    try:
        return parse_shard(text)
    except SelectionError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
