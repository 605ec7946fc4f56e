"""``codeagent fix``: read an issue, fix it on a branch, run the tests, commit, report.

The workflow around the loop:
1. check the repository (a git work tree with a commit; a dirty tree only with
   ``allow_dirty``, and then the user's changes are stashed by commit id and restored);
2. create ``codeagent/issue-N`` (or ``codeagent/task-<slug>``) from HEAD;
3. run the tests once before, so the result can say what changed;
4. run the agent (transcript written as it goes, so ``--resume RUN_ID`` can continue);
5. run the tests after, commit what the agent changed (build by-products left out),
   optionally push and open a pull request;
6. return a ``FixResult`` whose ``exit_code`` the CLI exits with:
   0 resolved (the agent finished, something changed, the tests pass or none exist),
   1 no acceptable fix, 2 usage or configuration error, 3 internal or model error,
   4 refused (the run would have let out a secret, touched a protected path, moved refs outside
   the task, or a command replaced a protected path), 130 interrupted.

No known secret leaves the run: the process's tokens and keys, the repository's git
credentials and ``FixOptions.secret_values`` are gathered once, before the run
(``KnownSecrets.gather``), and go to the session (tool results, events and the transcript
redacted) and to the gates of ``leaks``: the diff and the commit message before committing,
the pull request's title and body before pushing, the result before it is written or
printed. A gate that finds one refuses: status ``refused``, a message naming the secret and
where it was, nothing committed (the changes stay in the working tree, a stash stays a stash)
or nothing pushed.

A run that is interrupted (Ctrl-C) keeps the branch, the working files and the stash as they
are, and says how to resume; nothing is committed or restored behind the user's back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from codeagent.agent import gitops, leaks
from codeagent.agent.conclude import conclude, run_tests
from codeagent.agent.events import EventSink, ignore
from codeagent.agent.fixtypes import FixOptions, FixResult
from codeagent.agent.issues import IssueSpec, format_task
from codeagent.agent.loop import RunResult
from codeagent.agent.protocol import ModelClient
from codeagent.agent.session import SessionSpec, new_agent, resumed_agent
from codeagent.agent.transcript import RunState, Transcript, new_run_id, runs_dir
from codeagent.sandbox.checkpoint import Checkpoints
from codeagent.sandbox.confine import SandboxSpec
from codeagent.sandbox.git import GitRepo
from codeagent.sandbox.policy import Policy
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import ToolEnv

ClientFactory = Callable[[int], ModelClient]  # replies already consumed -> client
__all__ = ["FixOptions", "FixResult", "resume_fix", "run_tests", "start_fix"]


def tool_env(root: Path, options: FixOptions) -> ToolEnv:
    sandbox = SandboxSpec(root, network=options.network) if options.sandbox else None
    return ToolEnv(root, settings=options.settings, checkpoints=Checkpoints(root), sandbox=sandbox)


def known_secrets(root: Path, options: FixOptions) -> KnownSecrets:
    """What the run must never show, record or send: gathered before the sandbox starts."""
    return KnownSecrets.gather(root, os.environ, options.settings.secret_env_names, options.secret_values)


def start_fix(
    issue: IssueSpec,
    model_name: str,
    make_client: ClientFactory,
    options: FixOptions,
    sink: EventSink = ignore,
) -> FixResult:
    started = time.monotonic()
    repo = gitops.open_repo(options.root)
    root = repo.work_tree
    secrets = known_secrets(root, options)
    base = gitops.head(repo)
    original = gitops.current_branch(repo)
    dirty = gitops.dirty_paths(repo)
    if dirty and not options.allow_dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise gitops.WorkflowError(
            f"the work tree has uncommitted changes ({shown}); commit them or pass --allow-dirty"
        )
    stash = gitops.stash_all(repo) if dirty else None
    run_id = new_run_id()
    branch_base = (
        f"codeagent/issue-{issue.number}" if issue.number else f"codeagent/task-{gitops.slug(issue.title)}"
    )
    branch = gitops.branch_name(branch_base, repo)
    gitops.create_branch(repo, branch)
    refs_before = gitops.refs(repo)
    env = tool_env(root, options)
    before = run_tests(env)
    by_products = [path for code, path in gitops.status_entries(repo) if code == "??"]
    transcript = Transcript(runs_dir() / run_id / "transcript.jsonl", secrets)
    meta = {
        "run_id": run_id,
        "root": str(root),
        "model": model_name,
        "branch": branch,
        "base_commit": base,
        "original_branch": original,
        "stash": stash,
        "issue": asdict(issue),
        "tests_before": before,
        "limits": asdict(options.limits),
        "untracked_before": by_products,
        "refs_before": refs_before,
    }
    transcript.write("meta", **meta)
    spec = SessionSpec(
        make_client(0),
        env,
        options.limits,
        transcript,
        sink,
        options.repo_map,
        Policy(options.mode),
        options.codebase_share,
        secrets,
    )
    agent = new_agent(spec, format_task(issue))
    return _finish(agent.run, meta, env, transcript, options, started, repo)


def resume_fix(
    state: RunState, make_client: ClientFactory, options: FixOptions, sink: EventSink = ignore
) -> FixResult:
    started = time.monotonic() - state.elapsed_s
    meta = state.meta
    root = Path(meta["root"])
    if not root.is_dir():
        raise gitops.WorkflowError(f"the repository of run {meta['run_id']} is gone: {root}")
    repo = gitops.open_repo(root)
    secrets = known_secrets(root, options)
    if gitops.current_branch(repo) != meta["branch"]:
        gitops.checkout(repo, meta["branch"])
    env = tool_env(root, options)
    transcript = Transcript(runs_dir() / meta["run_id"] / "transcript.jsonl", secrets)
    transcript.write("resume", steps=state.steps)
    spec = SessionSpec(
        make_client(state.assistant_turns),
        env,
        options.limits,
        transcript,
        sink,
        policy=Policy(options.mode),
        codebase_share=options.codebase_share,
        secrets=secrets,
    )
    agent = resumed_agent(spec, state)
    return _finish(agent.run, meta, env, transcript, options, started, repo)


def _finish(
    run: Callable[[], RunResult],
    meta: dict[str, Any],
    env: ToolEnv,
    transcript: Transcript,
    options: FixOptions,
    started: float,
    repo: GitRepo,
) -> FixResult:
    result = FixResult(
        "error",
        "",
        meta["run_id"],
        meta["branch"],
        meta["base_commit"],
        tests_before=meta["tests_before"],
        transcript=str(transcript.path),
        stash=meta["stash"],
    )
    try:
        outcome = run()
    except KeyboardInterrupt:
        result.status = "interrupted"
        result.message = f"interrupted; continue with: codeagent fix --resume {meta['run_id']}"
        result.wall_time_s = round(time.monotonic() - started, 3)
        leaks.settle(result, transcript.secrets)
        transcript.write("result", **result.as_dict())
        return result
    _fill(result, outcome)
    try:
        conclude(result, outcome, meta, env, options, transcript.secrets, repo)
    except leaks.Refused as refused:
        kept = f"; your own changes stay in stash {meta['stash']}" if meta["stash"] else ""
        result.status, result.message = "refused", f"{refused}{kept}"
    else:
        if meta["stash"]:
            gitops.checkout(repo, meta["original_branch"] or meta["base_commit"])
            gitops.restore_stash(repo, meta["stash"])
    result.wall_time_s = round(time.monotonic() - started, 3)
    leaks.settle(result, transcript.secrets)
    transcript.write("result", **result.as_dict())
    transcript.close()
    return result


def _fill(result: FixResult, outcome: RunResult) -> None:
    result.steps = outcome.steps
    result.agent_status = outcome.status
    result.summary = outcome.summary
    result.tokens = {
        "prompt": outcome.usage.prompt_tokens,
        "cached": outcome.usage.cached_tokens,
        "completion": outcome.usage.completion_tokens,
    }
    result.usage = {
        **outcome.usage.as_dict(),
        "turns": [
            {"prompt": turn.prompt_tokens, "cached": turn.cached_tokens, "completion": turn.completion_tokens}
            for turn in outcome.turns
        ],
    }
