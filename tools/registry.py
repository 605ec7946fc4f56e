"""The tool registry: model-facing name -> import path, loaded lazily.

The default set is what the agent offers the model. ``get_tool`` errors list what exists.
"""

from __future__ import annotations

import importlib
from functools import cache

from codeagent.tools.base import Tool

TOOLS: dict[str, str] = {
    "read_file": "codeagent.tools.files:ReadFile",
    "list_files": "codeagent.tools.listing:ListFiles",
    "search": "codeagent.tools.search:Search",
    "edit_file": "codeagent.tools.edit:EditFile",
    "write_file": "codeagent.tools.files:WriteFile",
    "apply_patch": "codeagent.tools.patch:ApplyPatch",
    "run": "codeagent.tools.shell:RunCommand",
    "run_tests": "codeagent.tools.testing:RunTests",
    "repo_map": "codeagent.tools.repomap.tool:RepoMapTool",
    "update_plan": "codeagent.tools.plan:UpdatePlan",
    "finish": "codeagent.tools.plan:Finish",
}


class UnknownTool(KeyError):
    def __str__(self) -> str:
        return f"unknown tool {self.args[0]!r}; available: {', '.join(TOOLS)}"


@cache
def get_tool(name: str) -> Tool:
    """An instance of the named tool (tools are stateless; state lives in ``ToolEnv``)."""
    if name not in TOOLS:
        raise UnknownTool(name)
    module_name, _, class_name = TOOLS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()


def default_tools(names: list[str] | None = None) -> list[Tool]:
    return [get_tool(name) for name in (names or list(TOOLS))]
