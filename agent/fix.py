"""``codeagent fix``: read an issue, fix it on a branch, run the tests, commit, report.

The workflow around the loop:
1. check the repository (a git work tree with a commit; a dirty tree only with
   ``allow_dirty``, and then the user's changes are stashed by commit id and restored);
2. create ``codeagent/issue-N`` (or ``codeagent/task-<slug>``) from HEAD;
3. run the project's setup command, if any (``setup_command``: in the sandbox, as the mode
   allows a command; the model is told what happened), then the tests once before, so the
   result can say what changed;
4. run the agent (``run.open_run``: the transcript opens with the run's ``FixRecord`` and is
   written as it goes, so ``--resume RUN_ID`` can continue from it, ``run.resume_run``); with
   ``FixOptions.attempts`` (``--attempts N``), N agents work at once in workspaces of their
   own and the one the tests prove best is applied to the branch (``fix_attempts.py``);
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

A run that fails (an exception, Ctrl-C, a model error) before it changed anything puts the
user back on their branch, with their stash, and deletes the empty branch it made
(``rollback``); a run interrupted after it changed files keeps the branch, the working files
and the stash as they are, and says how to resume (``--resume`` remakes a deleted branch at
the base commit); nothing is committed or restored behind the user's back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codeagent.agent import events as ev
from codeagent.agent import gitops, leaks
from codeagent.agent.conclude import conclude_fix, run_tests
from codeagent.agent.events import EventSink, ignore
from codeagent.agent.fix_attempts import fix_with_attempts
from codeagent.agent.fixtypes import FixOptions, FixResult
from codeagent.agent.issues import IssueSpec, format_task
from codeagent.agent.loop import RunResult
from codeagent.agent.protocol import ModelClient
from codeagent.agent.record import FixRecord, RunState
from codeagent.agent.rollback import BranchMade
from codeagent.agent.run import Hooks, Run, open_run, resume_run
from codeagent.agent.setup_command import run_setup
from codeagent.agent.transcript import new_run_id, transcript_path
from codeagent.sandbox.git import GitRepo
from codeagent.sandbox.policy import Policy
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import ToolEnv

ClientFactory = Callable[[int], ModelClient]  # replies already consumed -> client
FAILED = ("error", "interrupted")  # results after which an empty branch is not kept
__all__ = ["FixOptions", "FixResult", "resume_fix", "run_tests", "start_fix"]


def known_secrets(root: Path, options: FixOptions) -> KnownSecrets:
    """What the run must never show, record or send: gathered before the sandbox starts."""
    return KnownSecrets.gather(root, os.environ, options.run.settings.secret_env_names, options.secret_values)


def start_fix(
    issue: IssueSpec,
    model_name: str,
    make_client: ClientFactory,
    options: FixOptions,
    sink: EventSink = ignore,
) -> FixResult:
    started = time.monotonic()
    repo = gitops.open_repo(options.root)
    gitops.refuse_exposed_credentials(repo, options.run.confinement if options.run.sandbox else None)
    root = repo.work_tree
    secrets = known_secrets(root, options)
    base, original, stash = gitops.head(repo), gitops.current_branch(repo), _stash(repo, options)
    untracked = [path for code, path in gitops.status_entries(repo) if code == "??"]
    branch = _task_branch(repo, issue)
    made = BranchMade(branch, base, original, stash, frozenset(untracked))
    try:
        result = _start(issue, model_name, make_client, options, sink, repo, secrets, made, started)
    except BaseException:
        made.undo_if_empty(repo)
        raise
    if result.status in FAILED and made.undo_if_empty(repo):
        back = original or base[:12]
        result.message += f" (back on {back}; the empty branch {branch} was deleted)"
    return result


def _start(
    issue: IssueSpec,
    model_name: str,
    make_client: ClientFactory,
    options: FixOptions,
    sink: EventSink,
    repo: GitRepo,
    secrets: KnownSecrets,
    made: BranchMade,
    started: float,
) -> FixResult:
    root, branch, base, original, stash = repo.work_tree, made.branch, made.base, made.original, made.stash
    refs_before = gitops.refs(repo)
    env = options.run.tool_env(root)
    task = format_task(issue)
    if options.run.setup_command:  # the project's, in the sandbox, as the mode allows a command
        shown = ev.redacting(sink, secrets.redact_data)
        task += (
            "\n\n" + run_setup(options.run.setup_command, env, Policy(options.run.mode), secrets, shown).note
        )
    record = FixRecord(
        run_id=new_run_id(),
        root=root,
        model=model_name,
        limits=options.run.limits,
        branch=branch,
        base_commit=base,
        issue=issue,
        original_branch=original,
        stash=stash,
        tests_before=run_tests(env),
        untracked_before=sorted(made.untracked_before),
        refs_before=refs_before,
    )
    hooks = Hooks(sink, secrets=secrets)
    if options.attempts is not None and options.attempts.count > 1:  # several at once: the best lands
        return fix_with_attempts(record, task, options.attempts, options, hooks, repo, secrets, started)
    run = open_run(record, task, make_client(0), env, options.run, hooks, _transcript(record))
    return Fixing(record, run, env, repo, options, started).finish()


def resume_fix(
    state: RunState, make_client: ClientFactory, options: FixOptions, sink: EventSink = ignore
) -> FixResult:
    started = time.monotonic() - state.elapsed_s
    record = state.record
    if not isinstance(record, FixRecord):
        raise gitops.WorkflowError(f"run {record.run_id} is not a fix run ({record.kind})")
    if not record.root.is_dir():
        raise gitops.WorkflowError(f"the repository of run {record.run_id} is gone: {record.root}")
    repo = gitops.open_repo(record.root)
    gitops.refuse_exposed_credentials(repo, options.run.confinement if options.run.sandbox else None)
    secrets = known_secrets(record.root, options)
    if gitops.current_branch(repo) != record.branch:
        if gitops.branch_name(record.branch, repo) == record.branch:  # deleted when the run failed empty
            repo.run(["branch", "--", record.branch, record.base_commit])
        gitops.checkout(repo, record.branch)
    env = options.run.tool_env(record.root)
    client = make_client(state.assistant_turns)
    run = resume_run(state, client, env, options.run, Hooks(sink, secrets=secrets), _transcript(record))
    return Fixing(record, run, env, repo, options, started).finish()


def _stash(repo: GitRepo, options: FixOptions) -> str | None:
    """The user's uncommitted changes stashed (only with ``allow_dirty``); None on a clean tree."""
    dirty = gitops.dirty_paths(repo)
    if dirty and not options.allow_dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise gitops.WorkflowError(
            f"the work tree has uncommitted changes ({shown}); commit them or pass --allow-dirty"
        )
    return gitops.stash_all(repo) if dirty else None


def _task_branch(repo: GitRepo, issue: IssueSpec) -> str:
    """``codeagent/issue-N`` (or ``codeagent/task-<slug>``), made from HEAD and checked out."""
    base = f"codeagent/issue-{issue.number}" if issue.number else f"codeagent/task-{gitops.slug(issue.title)}"
    branch = gitops.branch_name(base, repo)
    gitops.create_branch(repo, branch)
    return branch


def _transcript(record: FixRecord) -> Path:
    return transcript_path(record.run_id)


@dataclass(slots=True)
class Fixing:
    """A fix run under way: the agent runs, then its gates, commit and verdict (``conclude``)."""

    record: FixRecord
    run: Run
    env: ToolEnv
    repo: GitRepo
    options: FixOptions
    started: float  # time.monotonic(), less the time of earlier sessions of a resumed run

    def finish(self) -> FixResult:
        record = self.record
        result = FixResult(
            "error",
            "",
            record.run_id,
            record.branch,
            record.base_commit,
            tests_before=record.tests_before,
            transcript=str(self.run.transcript.path) if self.run.transcript else None,
            stash=record.stash,
            confinement=self.env.sandbox.confinement if self.env.sandbox else "none",
        )
        try:
            outcome = self.run.agent.run()
        except KeyboardInterrupt:
            result.status = "interrupted"
            result.message = f"interrupted; continue with: codeagent fix --resume {record.run_id}"
            return self._settled(result)
        _fill(result, outcome)
        self._conclude(result, outcome)
        self._settled(result)
        self.run.close()
        return result

    def _conclude(self, result: FixResult, outcome: RunResult) -> None:
        """Commit and judge; put the user's stash back unless a gate refused."""
        conclude_fix(result, outcome, self.record, self.env, self.options, self.run.secrets, self.repo)

    def _settled(self, result: FixResult) -> FixResult:
        """``result`` timed, cleared of secrets and recorded."""
        result.wall_time_s = round(time.monotonic() - self.started, 3)
        leaks.settle(result, self.run.secrets)
        self.run.write("result", **result.as_dict())
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
