"""What a transcript says about a run: its typed record (the ``meta`` line) and, for
``--resume``, its state at the last completed step.

A ``RunRecord`` opens every transcript; each kind of run is its own type with only the
fields it has:

- ``FixRecord`` (``codeagent fix``): the task branch, where it started, the user's stash,
  the issue, the tests and untracked files before the run, every ref before the run;
- ``SessionRecord`` (the terminal UI): the first line of the first message and the
  checkpoint taken then;
- ``EvalRecord`` (``codeagent eval``): the task's instance, repository and base commit;
- ``RunRecord`` itself (kind ``run``) for a run no front end resumes (a benchmark's).

On disk the record is the flat JSON object it always was, plus ``kind``. Reading accepts
every format written so far: a record without ``kind`` is a ``fix`` run (those were the
only ones written without it), one without ``run_id`` takes its folder's name, and one
without ``refs_before`` (recorded before refs were) skips the moved-refs check. A record
that cannot be read raises ``ValueError`` naming what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from codeagent.agent.issues import IssueSpec
from codeagent.agent.loop import Limits
from codeagent.agent.protocol import Message, Usage
from codeagent.agent.transcript import read_records


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """What every run records first: which run, where, with which model and budgets."""

    kind: ClassVar[str] = "run"
    run_id: str
    root: Path
    model: str = ""
    limits: Limits = field(default_factory=Limits)

    def meta(self) -> dict[str, Any]:
        """The record as the transcript's ``meta`` line holds it (JSON-ready)."""
        return {"run_id": self.run_id, "kind": self.kind, **asdict(self), "root": str(self.root)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> RunRecord:
        values = {f.name: meta[f.name] for f in fields(cls) if f.name in meta}
        try:
            return cls(**cls.typed(values))
        except TypeError as err:  # a field missing or of the wrong shape: not a record we wrote
            raise ValueError(f"the run's meta record cannot be read ({err})") from err

    @classmethod
    def typed(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (JSON) with the fields turned back into their types."""
        if "root" in values:
            values["root"] = Path(values["root"])
        if "limits" in values:
            values["limits"] = Limits(**values["limits"])
        return values


@dataclass(slots=True, kw_only=True)
class FixRecord(RunRecord):
    """A ``codeagent fix`` run: what its gates and its verdict compare against."""

    kind: ClassVar[str] = "fix"
    branch: str
    base_commit: str
    issue: IssueSpec
    original_branch: str | None = None
    stash: str | None = None  # the user's changes, stashed by commit id
    tests_before: dict[str, Any] = field(default_factory=dict)
    untracked_before: list[str] = field(default_factory=list)  # build by-products, never committed
    refs_before: dict[str, str] | None = None  # None: recorded before refs were

    @classmethod
    def typed(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = RunRecord.typed(values)
        if isinstance(values.get("issue"), Mapping):
            known = {f.name for f in fields(IssueSpec)}
            values["issue"] = IssueSpec(**{k: v for k, v in values["issue"].items() if k in known})
        return values


@dataclass(slots=True, kw_only=True)
class SessionRecord(RunRecord):
    """A terminal UI session: many user messages, each with its own budgets."""

    kind: ClassVar[str] = "interactive"
    task: str = ""  # the first line of the first message, for listings
    base: str | None = None  # the checkpoint at the first message: /diff compares with it


@dataclass(slots=True, kw_only=True)
class EvalRecord(RunRecord):
    """One task of ``codeagent eval`` (never resumed: an interrupted task starts over)."""

    kind: ClassVar[str] = "eval"
    instance_id: str
    repo: str
    base_commit: str


RECORDS: dict[str, type[RunRecord]] = {
    cls.kind: cls for cls in (FixRecord, SessionRecord, EvalRecord, RunRecord)
}  # RunRecord itself: a run of no front end's own (a benchmark's)


def parse_record(meta: Mapping[str, Any]) -> RunRecord:
    """The typed record of a ``meta`` line, in any format written so far."""
    kind = meta.get("kind") or FixRecord.kind  # fix runs were recorded without a kind
    cls = RECORDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown kind of run {kind!r}; kinds: {', '.join(RECORDS)}")
    return cls.from_meta(meta)


@dataclass(slots=True)
class RunState:
    """What a transcript says about a run, rebuilt for ``--resume``."""

    record: RunRecord
    messages: list[Message]
    steps: int = 0
    plan: list[dict[str, str]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    turns: list[Usage] = field(default_factory=list)  # usage of each model call of completed steps
    elapsed_s: float = 0.0
    end: dict[str, Any] | None = None

    @property
    def assistant_turns(self) -> int:
        return sum(1 for message in self.messages if message.get("role") == "assistant")


def load_run(path: Path) -> RunState:
    """Replay a transcript up to its last completed step."""
    records = read_records(path)
    metas = [r for r in records if r.get("type") == "meta"]
    if not metas:
        raise ValueError(f"{path} has no meta record; it is not a codeagent transcript")
    state = RunState(parse_record({"run_id": path.parent.name, **metas[0]}), [])
    tagged: list[tuple[int, Message]] = []
    turns: list[tuple[int, Usage]] = []  # kept apart: a compaction drops messages, not their cost
    for record in records:
        kind = record.get("type")
        if kind == "message":
            tagged.append((record.get("step", 0), record["message"]))
            if "usage" in record:
                turns.append((record.get("step", 0), Usage(**record["usage"])))
        elif kind == "compaction":
            tagged = [(record.get("step", 0), m) for m in record["messages"]]
        elif kind == "step":
            state.steps = record["step"]
            state.plan = record.get("plan", [])
            state.usage = Usage(**record.get("usage", {}))
            state.elapsed_s = record.get("elapsed_s", 0.0)
        elif kind == "end":
            state.end = record
    state.messages = [message for step, message in tagged if step <= state.steps]
    state.turns = [usage for step, usage in turns if step <= state.steps]
    return state
