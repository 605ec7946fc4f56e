"""``codeagent eval --attempts N``: per task, N agents at once; the best by evidence is graded.

``AttemptsSolver`` is a ``Solver``: for each task it makes N workspaces at the base commit
(``repos.materialize``, each set up with the task's environment), runs the repository's
own tests once before (in the first workspace, before any agent starts), runs N agents at
once (``agent.attempts.in_parallel``; the embedded model prefills their shared prompt once and
batches their decoding), runs the tests again in each workspace whose agent changed
something, and picks the winner with ``agent.attempts.choose``: the same evidence and
tie-break as ``fix --attempts``. Only the repository's visible tests count: the hidden tests
(``FAIL_TO_PASS``, ``PASS_TO_PASS``, the test patch) stay with the grader, which grades the
winner's patch alone. The task's report carries every attempt's outcome, the winner and why
(``TaskReport.attempts``); its tokens are the sum over the attempts, its steps and transcript
the winner's; each attempt's transcript is ``transcripts/<id>.<n>.jsonl``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codeagent.agent import attempts as at
from codeagent.agent.protocol import ModelClient
from codeagent.evals.repos import materialize
from codeagent.evals.solvers import AgentSolver, Attempt
from codeagent.evals.task import Task
from codeagent.tools.base import ToolEnv

ClientFor = Callable[[Task, int], ModelClient]  # (task, attempt number) -> its client
CHANGED = re.compile(r"^diff --git a/(.+?) b/", re.MULTILINE)


@dataclass(slots=True)
class AttemptsSolver:
    agent: AgentSolver  # how each attempt runs (settings, budgets, transcripts)
    count: int
    client_for: ClientFor
    sampling: list[at.Sampling]

    @property
    def name(self) -> str:
        return self.agent.name

    def solve(self, task: Task, source: Path, root: Path, stop: threading.Event) -> Attempt:
        envs: list[ToolEnv] = []
        for number in range(1, self.count + 1):
            materialize(task, source, root / f"attempt-{number}")
            envs.append(self.agent.prepare(task, root / f"attempt-{number}"))
        before = at.run_suite(envs[0])
        started = time.monotonic()
        results = at.in_parallel(
            self.count, lambda n: self._one(task, envs[n - 1], n, before, stop), stop.set
        )
        outcomes = [outcome for outcome, _ in results]
        winner, why = at.choose(outcomes)
        chosen = results[winner.number - 1][1]
        keys = ("prompt", "cached", "completion")
        chosen.tokens = {key: sum(o.tokens.get(key, 0) for o in outcomes) for key in keys}
        chosen.agent_time_s = time.monotonic() - started
        chosen.attempts = {
            "count": self.count,
            "winner": winner.number,
            "why": why,
            "rule": at.RULE,
            "attempts": [outcome.as_dict() for outcome in outcomes],
        }
        return chosen

    def _one(
        self, task: Task, env: ToolEnv, number: int, before: at.SuiteRun, stop: threading.Event
    ) -> tuple[at.AttemptOutcome, Attempt]:
        client = self.client_for(task, number)
        attempt = self.agent.run(task, env, stop, client, self.agent.transcript_path(task, f".{number}"))
        after = at.run_suite(env) if attempt.patch else before
        outcome = at.AttemptOutcome(
            number,
            self.sampling[number - 1],
            attempt.agent_status or "error",
            attempt.agent_message,
            attempt.steps,
            attempt.tokens,
            sorted(set(CHANGED.findall(attempt.patch))),
            attempt.patch,
            after.summary(),
            at.evidence(before, after),
            attempt.transcript,
            attempt.agent_time_s,
        )
        return outcome, attempt
