"""``codeagent fix --attempts N``: N agents at once on one issue; the best, by evidence, lands.

``fix.py`` hands over once it has made the task branch and the run's record; then:

1. N workspaces: fresh repositories at the base commit in a temporary folder, fetched from
   the user's repository (tracked files only: ignored files such as a virtualenv are not
   there; the project's setup command runs in each), each with its own sandbox, no
   checkpoints (the workspaces are thrown away);
2. the tests before, once, in the first workspace before any agent starts;
3. N runs at once (``attempts.in_parallel``), each with its own client (``AttemptPlan``),
   its own transcript (run id ``<run id>-<n>``, kept) and its events tagged with its number
   (``events.AttemptEvent``); each attempt ends with the patch of what it changed and, when
   it changed something, the tests again in its workspace;
4. the winner (``attempts.choose``): its patch is applied to the user's task branch, and the
   usual ending runs there (``conclude``: gates, commit, the tests after, verdict, push);
5. the result lists every attempt with its outcome and says why the winner won
   (``FixResult.attempts``); its tokens are the sum over the attempts, its steps the
   winner's. The run's own transcript holds its record, each attempt's outcome and the result.

Ctrl-C stops every attempt at its next step; nothing lands and the run says so. Not
supported: ``--resume`` of a run with attempts (start it again).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from codeagent.agent import attempts as at
from codeagent.agent import events as ev
from codeagent.agent import gitops, leaks
from codeagent.agent.conclude import conclude_fix
from codeagent.agent.fixtypes import FixOptions, FixResult
from codeagent.agent.loop import RunResult
from codeagent.agent.record import FixRecord
from codeagent.agent.run import Hooks, open_run
from codeagent.agent.setup_command import run_setup
from codeagent.agent.transcript import Transcript, transcript_path
from codeagent.sandbox.git import GitError, GitRepo, git, git_outside
from codeagent.sandbox.policy import Policy
from codeagent.sandbox.secrets import KnownSecrets


def fix_with_attempts(
    record: FixRecord,
    task: str,
    plan: at.AttemptPlan,
    options: FixOptions,
    hooks: Hooks,
    repo: GitRepo,
    secrets: KnownSecrets,
    started: float,
) -> FixResult:
    main = Transcript(transcript_path(record.run_id), secrets)
    main.write("meta", **record.meta())
    result = FixResult(
        "error",
        "",
        record.run_id,
        record.branch,
        record.base_commit,
        tests_before=record.tests_before,
        transcript=str(main.path),
        stash=record.stash,
    )
    try:
        runs = _Attempts(record, task, plan, options, hooks, repo, secrets).run()
    except KeyboardInterrupt:
        result.status, result.message = "interrupted", "interrupted; nothing landed (start the run again)"
        return _settled(result, main, secrets, started)
    outcomes = [outcome for outcome, _ in runs]
    winner, why = at.choose(outcomes)
    for outcome in outcomes:
        main.write("attempt", **outcome.as_dict())
    result.attempts = _report(plan, outcomes, winner, why)
    _fill(result, winner, runs[winner.number - 1][1], outcomes)
    try:
        if winner.patch:
            repo.run(["apply", "--binary", "--whitespace=nowarn", "-"], input_text=winner.patch)
    except GitError as err:  # an untracked file of the user's in the way, say: nothing landed
        result.status, result.message = (
            "error",
            f"attempt {winner.number}'s change does not apply here: {err}",
        )
        return _settled(result, main, secrets, started)
    _conclude(result, runs[winner.number - 1][1], record, options, secrets, repo)
    return _settled(result, main, secrets, started)


class _Attempts:
    """The attempts of one run: workspaces, runs, evidence."""

    def __init__(
        self,
        record: FixRecord,
        task: str,
        plan: at.AttemptPlan,
        options: FixOptions,
        hooks: Hooks,
        repo: GitRepo,
        secrets: KnownSecrets,
    ) -> None:
        self.record, self.task, self.plan, self.options, self.hooks = record, task, plan, options, hooks
        self.repo, self.secrets = repo, secrets
        self.config = dataclasses.replace(options.run, checkpoints=False)
        self.cancel = hooks.cancel or threading.Event()
        self.lock = threading.Lock()  # one event at a time reaches the sink
        self.before: at.SuiteRun | None = None

    def run(self) -> list[tuple[at.AttemptOutcome, RunResult]]:
        folder = Path(tempfile.mkdtemp(prefix="codeagent-attempts-"))
        try:
            roots = [folder / f"attempt-{n}" for n in range(1, self.plan.count + 1)]
            for root in roots:
                _workspace(self.repo, self.record.base_commit, root)
            self.before = at.run_suite(self.config.tool_env(roots[0]))
            return at.in_parallel(self.plan.count, lambda n: self._one(n, roots[n - 1]), self.cancel.set)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _one(self, number: int, root: Path) -> tuple[at.AttemptOutcome, RunResult]:
        started = time.monotonic()
        record = dataclasses.replace(self.record, run_id=f"{self.record.run_id}-{number}", root=root)
        env = self.config.tool_env(root)
        hooks = Hooks(self._tagged(number), self.hooks.policy, self.hooks.secrets, self.cancel)
        if self.config.setup_command:  # the project's, in this workspace too (told once, in the task)
            run_setup(self.config.setup_command, env, Policy(self.config.mode), self.secrets, hooks.sink)
        client = self.plan.client_for(number)
        run = open_run(record, self.task, client, env, self.config, hooks, transcript_path(record.run_id))
        try:
            result = run.agent.run()
        finally:
            run.close()
        if result.status == "interrupted":
            raise KeyboardInterrupt
        patch, changed = _patch(root, self.record.base_commit)
        assert self.before is not None
        after = at.run_suite(env) if patch else self.before
        usage = result.usage
        sampling = self.plan.sampling[number - 1] if self.plan.sampling else at.Sampling(None, None)
        outcome = at.AttemptOutcome(
            number,
            sampling,
            result.status,
            result.message,
            result.steps,
            {
                "prompt": usage.prompt_tokens,
                "cached": usage.cached_tokens,
                "completion": usage.completion_tokens,
            },
            changed,
            patch,
            after.summary(),
            at.evidence(self.before, after),
            str(run.transcript.path) if run.transcript else None,
            time.monotonic() - started,
        )
        return outcome, result

    def _tagged(self, number: int) -> ev.EventSink:
        sink = self.hooks.sink

        def forward(event: ev.Event) -> None:
            with self.lock:
                sink(ev.AttemptEvent(number, event))

        return forward


def _workspace(repo: GitRepo, base: str, root: Path) -> None:
    """A fresh repository at ``base`` in ``root``, fetched from ``repo`` (that commit only)."""
    root.mkdir(parents=True)
    git_outside(["init", "-q"], root)
    git(["fetch", "-q", "--no-tags", "--depth", "1", str(repo.work_tree), base], root, protocols=("file",))
    git(["checkout", "-q", "--detach", base], root)


def _patch(root: Path, base: str) -> tuple[str, list[str]]:
    """What an attempt changed since ``base``: one patch (binary changes kept) and its files."""
    paths = gitops.changed_paths(GitRepo.open(root), set())
    if not paths:
        return "", []
    git(["add", "-A", "--", *paths], root)
    diff = ["diff", "--cached", "--no-ext-diff", "--no-textconv", "--binary", "--full-index", base, "--"]
    return git([*diff, *paths], root), paths


def _report(
    plan: at.AttemptPlan, outcomes: list[at.AttemptOutcome], winner: at.AttemptOutcome, why: str
) -> dict[str, Any]:
    return {
        "count": plan.count,
        "winner": winner.number,
        "why": why,
        "rule": at.RULE,
        "attempts": [outcome.as_dict() for outcome in outcomes],
    }


def _fill(
    result: FixResult, winner: at.AttemptOutcome, run: RunResult, outcomes: list[at.AttemptOutcome]
) -> None:
    result.steps, result.agent_status, result.summary = winner.steps, run.status, run.summary
    keys = ("prompt", "cached", "completion")
    result.tokens = {key: sum(o.tokens.get(key, 0) for o in outcomes) for key in keys}
    result.usage = {"attempts": [o.tokens for o in outcomes], "total": result.tokens}


def _conclude(
    result: FixResult,
    run: RunResult,
    record: FixRecord,
    options: FixOptions,
    secrets: KnownSecrets,
    repo: GitRepo,
) -> None:
    """``fix``'s own ending on the user's branch: gates, commit, tests, verdict; the stash back."""
    env = options.run.tool_env(record.root)
    if conclude_fix(result, run, record, env, options, secrets, repo) and result.attempts is not None:
        result.message += f" (attempt {result.attempts['winner']} of {result.attempts['count']})"


def _settled(result: FixResult, main: Transcript, secrets: KnownSecrets, started: float) -> FixResult:
    result.wall_time_s = round(time.monotonic() - started, 3)
    leaks.settle(result, secrets)
    main.write("result", **result.as_dict())
    main.close()
    return result
