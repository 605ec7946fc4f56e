"""``update_plan(items)`` and ``finish(summary)``: the plan checklist and the way out.

The plan lives in ``ToolEnv.plan`` (a list of ``{"step", "status"}``) so every UI shows the
same checklist; ``finish`` records the summary in ``ToolEnv.finished`` and the loop stops.
"""

from __future__ import annotations

from typing import Any, ClassVar

from codeagent.tools.base import Observation, ToolEnv, ToolError, schema

STATUSES = ("pending", "in_progress", "completed")
MARKS = {"pending": "[ ]", "in_progress": "[~]", "completed": "[x]"}


def render_plan(plan: list[dict[str, str]]) -> str:
    return "\n".join(f"{MARKS[item['status']]} {item['step']}" for item in plan) or "(empty plan)"


class UpdatePlan:
    name: ClassVar[str] = "update_plan"
    description: ClassVar[str] = (
        "Write or replace the plan as a checklist. Call it first with the steps you intend, "
        "then again whenever a step starts or completes. At most one step is in_progress."
    )
    parameters: ClassVar[dict[str, Any]] = schema(
        {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "step": {"type": "string"},
                        "status": {"type": "string", "enum": list(STATUSES)},
                    },
                    "required": ["step", "status"],
                },
            }
        },
        ["items"],
    )
    mutates: ClassVar[bool] = False

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


class Finish:
    name: ClassVar[str] = "finish"
    description: ClassVar[str] = (
        "End the task. Call it once the change is made and the tests pass, or when you cannot "
        "go further; the summary says what was changed and why, or what blocked you."
    )
    parameters: ClassVar[dict[str, Any]] = schema({"summary": {"type": "string"}}, ["summary"])
    mutates: ClassVar[bool] = False

    def run(self, args: dict[str, Any], env: ToolEnv) -> Observation:
        summary = str(args["summary"]).strip()
        if not summary:
            raise ToolError("summary must say what was done")
        env.finished = summary
        return Observation("finished", data={"summary": summary})
