"""Several attempts at one task, and the choice of the one that lands, by evidence.

``codeagent fix --attempts N`` (``fix_attempts.py``) and ``codeagent eval --attempts N``
(``evals/attempts.py``) run N agents on the same task at once, each in its own workspace and
sandbox, each with its own client (``AttemptPlan.client_for``). The embedded runtime serves
them from one engine: their shared prompt (system, tools, pinned repository context, the
task) is prefilled once and their decoding is batched (``backend/scheduler.py``); a remote
model gets N parallel requests, a scripted model one script per attempt.

Sampling (``sampling_plan``): attempt 1 samples as a single run would (the client's own
default: greedy for the embedded model), so N attempts never lose the answer one attempt
gives; attempts 2..N sample at ``DEFAULT_TEMPERATURE`` (0.7, ``--attempt-temperature``) with
seed = attempt number (reproducible where the backend honours seeds: the embedded runtime
does; remote APIs get the temperature only).

The winner (``choose``), by evidence first:
1. acceptable attempts first: the agent finished, changed something, the tests pass (or none
   exist), every test that failed before passes and every test that passed still does;
2. then fewest tests broken (passed before, not after), then fewest still failing;
3. tie-break: the smallest diff (lines added plus removed), then the fewest steps, then the
   lowest attempt number.
``choose`` says why in words (``why``): what put the winner ahead of the runner-up.

The tests here are the repository's own (the ``run_tests`` tool, in each attempt's sandbox),
run once before any agent starts (in a pristine workspace) and once after each attempt that
changed something. Limits: an attempt that changes nothing is not run again, its tests are
the ones before; tests that are flaky make the evidence flaky.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from codeagent.agent.protocol import ModelClient
from codeagent.tools.base import ToolEnv, run_tool
from codeagent.tools.registry import get_tool

DEFAULT_TEMPERATURE = 0.7
RULE = (
    "acceptable first (agent finished, files changed, tests pass, no test that failed before still fails, "
    "none that passed broken), then fewest tests broken, fewest still failing, then the smallest diff, "
    "fewest steps, lowest attempt number"
)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float | None  # None: the client's own default (greedy for the embedded model)
    seed: int | None


def sampling_plan(count: int, temperature: float = DEFAULT_TEMPERATURE) -> list[Sampling]:
    """How each attempt samples: attempt 1 as a single run, the others at ``temperature`` with
    seed = attempt number."""
    return [Sampling(None, None), *(Sampling(temperature, n) for n in range(2, count + 1))]


@dataclass(slots=True)
class AttemptPlan:
    """What ``--attempts N`` needs: how many, and attempt number (1..N) -> its client."""

    count: int
    client_for: Callable[[int], ModelClient]
    sampling: list[Sampling] = field(default_factory=list)

    def first(self, consumed: int = 0) -> ModelClient:
        """Attempt 1's client, where a single run's client factory is asked for."""
        return self.client_for(1)


@dataclass(frozen=True, slots=True)
class SuiteRun:
    detected: bool
    exit_code: int | None = None
    passed: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()  # failures and errors
    command: str | None = None

    @property
    def ok(self) -> bool:
        """The tests pass, or there are none to run."""
        return not self.detected or self.exit_code == 0

    def summary(self) -> dict[str, Any]:
        if not self.detected:
            return {"detected": False}
        return {
            "detected": True,
            "command": self.command,
            "exit_code": self.exit_code,
            "passed": len(self.passed),
            "failed": len(self.failed),
        }


def run_suite(env: ToolEnv) -> SuiteRun:
    """The repository's tests in ``env`` (its sandbox), by name."""
    data = run_tool(get_tool("run_tests"), {}, env).data
    if "exit_code" not in data:
        return SuiteRun(False)
    failed = frozenset(data.get("failed", [])) | frozenset(data.get("errors", []))
    return SuiteRun(True, data["exit_code"], frozenset(data.get("passed", [])), failed, data.get("command"))


@dataclass(slots=True)
class Evidence:
    tests_ok: bool
    fixed: list[str] = field(default_factory=list)  # failed before, pass now
    still_failing: list[str] = field(default_factory=list)  # failed before, not passing now
    broken: list[str] = field(default_factory=list)  # passed before, not passing now (gone counts)


def evidence(before: SuiteRun, after: SuiteRun) -> Evidence:
    return Evidence(
        after.ok,
        sorted(before.failed & after.passed),
        sorted(before.failed - after.passed),
        sorted(before.passed - after.passed),
    )


@dataclass(slots=True)
class AttemptOutcome:
    number: int
    sampling: Sampling
    agent_status: str
    agent_message: str = ""
    steps: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    files_changed: list[str] = field(default_factory=list)
    patch: str = ""
    tests: dict[str, Any] = field(default_factory=dict)  # ``SuiteRun.summary`` after the attempt
    evidence: Evidence = field(default_factory=lambda: Evidence(True))
    transcript: str | None = None
    wall_time_s: float = 0.0

    @property
    def diff_lines(self) -> int:
        return diff_size(self.patch)

    @property
    def acceptable(self) -> bool:
        e = self.evidence
        return (
            self.agent_status == "finished"
            and bool(self.patch)
            and e.tests_ok
            and not e.broken
            and not e.still_failing
        )

    def key(self) -> tuple[int, int, int, int, int, int]:
        e = self.evidence
        return (
            not self.acceptable,
            len(e.broken),
            len(e.still_failing),
            self.diff_lines,
            self.steps,
            self.number,
        )

    def verdict(self) -> str:
        e = self.evidence
        if self.acceptable:
            return "passes"
        if self.agent_status in ("error", "refused"):
            return f"agent {self.agent_status}"
        if not self.patch:
            return "no change"
        if e.broken:
            return f"breaks {len(e.broken)} test(s)"
        if e.still_failing:
            return f"leaves {len(e.still_failing)} test(s) failing"
        if not e.tests_ok:
            return "tests fail"
        return f"agent stopped ({self.agent_status})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "temperature": self.sampling.temperature,
            "seed": self.sampling.seed,
            "verdict": self.verdict(),
            "acceptable": self.acceptable,
            "agent_status": self.agent_status,
            "agent_message": self.agent_message,
            "steps": self.steps,
            "tokens": self.tokens,
            "files_changed": self.files_changed,
            "diff_lines": self.diff_lines,
            "tests": self.tests,
            "evidence": asdict(self.evidence),
            "transcript": self.transcript,
            "wall_time_s": round(self.wall_time_s, 3),
        }


def diff_size(patch: str) -> int:
    """Lines added plus lines removed."""
    return sum(1 for line in patch.splitlines() if line[:1] in "+-" and not line.startswith(("+++ ", "--- ")))


def choose(outcomes: list[AttemptOutcome]) -> tuple[AttemptOutcome, str]:
    """The winner by ``RULE``, and why it won."""
    ranked = sorted(outcomes, key=AttemptOutcome.key)
    winner = ranked[0]
    if len(ranked) == 1:
        return winner, "the only attempt"
    return winner, _why(winner, ranked[1])


def _why(winner: AttemptOutcome, second: AttemptOutcome) -> str:
    w, s = winner.key(), second.key()
    name, other = f"attempt {winner.number}", f"attempt {second.number}"
    if w[0] != s[0]:
        return (
            f"{name} is the only acceptable one ({winner.verdict()}); next best, {other}: {second.verdict()}"
        )
    reasons = [
        "fewer tests broken",
        "fewer tests still failing",
        "the smaller diff",
        "fewer steps",
        "the lower number",
    ]
    for index, reason in enumerate(reasons, start=1):
        if w[index] != s[index]:
            how = "both acceptable" if winner.acceptable else "none acceptable"
            return f"{how}; {name} has {reason} than {other} ({w[index]} vs {s[index]})"
    return f"{name} ranks first"


def in_parallel(count: int, work: Callable[[int], T], on_interrupt: Callable[[], None]) -> list[T]:
    """``work(n)`` for n = 1..count on as many threads; Ctrl-C calls ``on_interrupt`` (which
    must make the workers stop soon), waits for them and raises it again."""
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="attempt") as pool:
        futures: list[Future[T]] = [pool.submit(work, n) for n in range(1, count + 1)]
        try:
            wait(futures)
        except KeyboardInterrupt:
            on_interrupt()
            wait(futures)
            raise
        return [future.result() for future in futures]
