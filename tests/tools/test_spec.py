"""The tools' contracts in specs.toml: every registered tool has one, every entry is a tool, and
what the model is told agrees with what the code checks."""

from __future__ import annotations

import re

import pytest

from codeagent.tools.base import openai_schema
from codeagent.tools.files import PAGE_LINES
from codeagent.tools.plan import MARKS, STATUSES
from codeagent.tools.registry import TOOLS, get_tool
from codeagent.tools.spec import Specified, _specs


def test_entries_and_registry_match() -> None:
    assert set(_specs()) == set(TOOLS)


@pytest.mark.parametrize("name", list(TOOLS))
def test_each_tool_takes_its_entry(name: str) -> None:
    tool = get_tool(name)
    assert tool.name == name
    assert isinstance(tool.mutates, bool)
    function = openai_schema(tool)["function"]
    assert function["parameters"]["additionalProperties"] is False
    assert set(function["parameters"]["required"]) <= set(function["parameters"]["properties"])
    assert not re.search(r"\{\w+\}", function["description"]), "an unfilled placeholder"
    assert "  " not in function["description"] and "\n" not in function["description"]


def test_filled_values_come_from_code() -> None:
    assert f"up to {PAGE_LINES} lines" in get_tool("read_file").description
    status = get_tool("update_plan").parameters["properties"]["items"]["items"]["properties"]["status"]
    assert tuple(status["enum"]) == STATUSES == tuple(MARKS)


def test_mutating_tools_are_the_ones_that_write() -> None:
    assert {name for name in TOOLS if get_tool(name).mutates} == {
        "edit_file",
        "write_file",
        "apply_patch",
        "run",
        "run_tests",
    }


def test_a_missing_entry_fails_when_the_class_is_made() -> None:
    with pytest.raises(KeyError):
        type("Nameless", (Specified,), {}, spec="no_such_tool")
