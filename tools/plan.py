"""``update_plan(items)`` and ``finish(summary)``: the plan checklist and the way out.

The plan lives in ``ToolEnv.plan`` (a list of ``{"step", "status"}``) so every UI shows the
same checklist; ``finish`` records the summary in ``ToolEnv.finished`` and the loop stops.
"""

from __future__ import annotations

from typing import Any

from codeagent.tools.base import Observation, ToolEnv, ToolError
from codeagent.tools.spec import Specified

STATUSES = ("pending", "in_progress", "completed")
MARKS = {"pending": "[ ]", "in_progress": "[~]", "completed": "[x]"}


def render_plan(plan: list[dict[str, str]]) -> str:
    return "\n".join(f"{MARKS[item['status']]} {item['step']}" for item in plan) or "(empty plan)"


class UpdatePlan(Specified, spec="update_plan"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        items = args["items"]
        if not isinstance(items, list) or not items:
            raise ToolError("items must be a non-empty list of {step, status}")
        plan = [_check_item(index, item) for index, item in enumerate(items, 1)]
        if sum(item["status"] == "in_progress" for item in plan) > 1:
            raise ToolError("only one step may be in_progress at a time")
        env.plan = plan
        return Observation(f"plan updated:\n{render_plan(plan)}", data={"plan": plan})


def _check_item(index: int, item: Any) -> dict[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("step"), str) or not item["step"].strip():
        raise ToolError(f"item {index} needs a non-empty string 'step'")
    status = item.get("status", "pending")
    if status not in STATUSES:
        raise ToolError(f"item {index} has status {status!r}; use one of {', '.join(STATUSES)}")
    return {"step": item["step"].strip(), "status": status}


class Finish(Specified, spec="finish"):
    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        summary = str(args["summary"]).strip()
        if not summary:
            raise ToolError("summary must say what was done")
        env.finished = summary
        return Observation("finished", data={"summary": summary})
