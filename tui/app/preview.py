"""What an approval shows: the full diff an edit would make, or the full command.

Made on the agent's worker thread from the request's arguments and the files as they are,
without changing anything: ``edit_file`` goes through the edit tool's own matching
(``tools.edit.replace``), so the preview is the diff the tool would write; ``apply_patch``
shows the patch as given; ``run_tests`` the command the tool would run. When an edit would
fail (text not found, path outside the repository), the preview says why and shows the
arguments, since the user may still let the tool report the error to the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from codeagent.sandbox.policy import ApprovalRequest
from codeagent.tools.base import ToolEnv, ToolError
from codeagent.tools.diffs import read_text, unified_diff
from codeagent.tools.edit import replace
from codeagent.tools.testing import detect, with_paths


@dataclass(frozen=True, slots=True)
class Preview:
    title: str  # one line: what wants to happen
    body: str  # the diff or command, in full
    is_diff: bool


def preview(request: ApprovalRequest, env: ToolEnv) -> Preview:
    args = request.arguments
    try:
        match request.tool:
            case "run":
                return Preview("run a command", str(args.get("command", "")), False)
            case "run_tests":
                return Preview("run the tests", _test_command(env, args), False)
            case "edit_file":
                return _edit(env, args)
            case "write_file":
                return _write(env, args)
            case "apply_patch":
                return Preview("apply a patch", str(args.get("patch", "")), True)
    except ToolError as err:
        shown = json.dumps(args, indent=2, ensure_ascii=False)
        return Preview(f"{request.tool} (it would fail: {err})", shown, False)
    return Preview(request.tool, json.dumps(args, indent=2, ensure_ascii=False), False)


def _edit(env: ToolEnv, args: dict) -> Preview:
    path = env.resolve(str(args.get("path", "")))
    rel = env.rel(path)
    old, new = str(args.get("old_text", "")), str(args.get("new_text", ""))
    if not path.exists():
        return Preview(f"create {rel}", unified_diff(rel, None, new), True)
    before = read_text(path, rel)
    after, rule = replace(before, old, new)
    note = f" (matched ignoring {rule})" if rule else ""
    return Preview(f"edit {rel}{note}", unified_diff(rel, before, after), True)


def _write(env: ToolEnv, args: dict) -> Preview:
    path = env.resolve(str(args.get("path", "")))
    rel = env.rel(path)
    before = read_text(path, rel) if path.is_file() else None
    verb = "create" if before is None else "overwrite"
    return Preview(f"{verb} {rel}", unified_diff(rel, before, str(args.get("content", ""))), True)


def _test_command(env: ToolEnv, args: dict) -> str:
    command = detect(env)
    if command is None:
        return "(no test command found: the tool will say so)"
    paths = args.get("paths")
    if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
        command = with_paths(command, paths, env.root)
    return command.shown()
