"""Memory files beyond the root's: the user's own AGENTS.md pinned first, subfolders' AGENTS.md
shown in the turns when the agent first works there. The real loop, real tools, a real git
repository and the scripted model."""

from __future__ import annotations

import os
from pathlib import Path

from codeagent import xdg
from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.loop import Limits
from codeagent.agent.memory import MAX_FOLDER_CHARS, FolderMemory, user_memory
from codeagent.agent.session import SessionSpec, new_agent
from codeagent.tools.base import ToolEnv

FILES = {
    "AGENTS.md": "root rule: be careful\n",
    "README.md": "hello\n",
    "web/AGENTS.md": "web rule: use tabs\n",
    "web/app.js": "let x = 1;\n",
    "web/ui/AGENTS.md": "ui rule: no jQuery\n",
    "web/ui/button.js": "export {};\n",
    "web/ui/menu.js": "export {};\n",
    "lib/core.py": "X = 1\n",
}


def run(root: Path, script: Path, user_memory_text: tuple[str, str] | None = None):
    spec = SessionSpec(
        ScriptedClient(script), ToolEnv(root), Limits(), None, repo_map=False, codebase_share=0
    )
    spec.user_memory = user_memory_text
    agent = new_agent(spec, "look around")
    return agent, agent.run()


def tool_texts(agent) -> list[str]:
    return [m["content"] for m in agent.context.turns if m["role"] == "tool"]


def test_subfolder_instructions_are_shown_once_when_the_agent_works_there(make_repo, write_script, tool_call):
    root = make_repo(FILES)
    script = write_script(
        [
            tool_call("read_file", "c1", path="README.md"),
            tool_call("read_file", "c2", path="web/ui/button.js"),
            tool_call("read_file", "c3", path="web/ui/menu.js"),
            tool_call("list_files", "c4", path="web"),
            tool_call("read_file", "c5", path="lib/core.py"),
            tool_call("finish", "c6", summary="done"),
        ]
    )
    agent, result = run(root, script)
    assert result.status == "finished"
    pinned = agent.context.pinned[0]["content"]
    assert "root rule" in pinned and "web rule" not in pinned and "ui rule" not in pinned
    readme, button, menu, listing, core = tool_texts(agent)[:5]
    assert "rule" not in readme
    # outermost first, each marked with its path as repository content
    assert button.index("[Instructions from web/AGENTS.md (repository content") < button.index(
        "[Instructions from web/ui/AGENTS.md (repository content"
    )
    assert "web rule: use tabs" in button and "ui rule: no jQuery" in button
    assert "rule" not in menu and "rule" not in listing and "rule" not in core  # once per session
    assert set(agent.context.folders.shown) == {"web/AGENTS.md", "web/ui/AGENTS.md"}


def test_the_pinned_prefix_stays_byte_for_byte_the_same(make_repo, write_script, tool_call):
    root = make_repo(FILES)
    script = write_script(
        [tool_call("read_file", "c1", path="web/app.js"), tool_call("finish", "c2", summary="done")]
    )
    spec = SessionSpec(ScriptedClient(script), ToolEnv(root), Limits(), None, repo_map=False)
    agent = new_agent(spec, "look")
    before = [dict(m) for m in agent.context.pinned]
    agent.run()
    assert agent.context.pinned == before
    assert "web rule" in tool_texts(agent)[0]


def test_a_patch_and_a_new_file_count_as_working_there(make_repo, write_script, tool_call):
    root = make_repo(FILES)
    patch = "--- a/web/app.js\n+++ b/web/app.js\n@@ -1 +1 @@\n-let x = 1;\n+let x = 2;\n"
    plan = [{"step": "edit", "status": "in_progress"}]
    script = write_script(
        [
            tool_call("update_plan", "c0", items=plan),
            tool_call("apply_patch", "c1", patch=patch),
            tool_call("write_file", "c2", path="web/ui/new.js", content="1\n"),
            tool_call("finish", "c3", summary="done"),
        ]
    )
    agent, _ = run(root, script)
    _, patched, written = tool_texts(agent)[:3]
    assert "web rule" in patched and "ui rule" not in patched
    assert "ui rule" in written and "web rule" not in written


def test_big_and_outside_and_linked_files_are_cut_or_left_out(make_repo, write_script, tool_call, tmp_path):
    outside = tmp_path / "secret.md"
    outside.write_text("SECRET-OUTSIDE\n")
    root = make_repo({"big/AGENTS.md": "x" * (MAX_FOLDER_CHARS + 500), "big/a.py": "", "link/a.py": ""})
    os.symlink(outside, root / "link" / "AGENTS.md")
    script = write_script(
        [
            tool_call("read_file", "c1", path="big/a.py"),
            tool_call("read_file", "c2", path="link/a.py"),
            tool_call("read_file", "c3", path="../secret.md"),
            tool_call("finish", "c4", summary="done"),
        ]
    )
    agent, _ = run(root, script)
    big, linked, escaped = tool_texts(agent)[:3]
    assert "x" * MAX_FOLDER_CHARS in big and "x" * (MAX_FOLDER_CHARS + 1) not in big
    assert "cut: the rest of big/AGENTS.md is not shown" in big
    assert "SECRET-OUTSIDE" not in linked + escaped and "Instructions from" not in linked + escaped


def test_the_users_own_agents_md_is_pinned_before_the_projects(make_repo, write_script, tool_call):
    path = xdg.folder("config") / "AGENTS.md"
    path.parent.mkdir(parents=True)
    path.write_text("user rule: answer in French\n")
    found = user_memory()
    assert found == (str(path), "user rule: answer in French\n")
    root = make_repo(FILES)
    agent, _ = run(root, write_script([tool_call("finish", "c1", summary="done")]), found)
    pinned = agent.context.pinned[0]["content"]
    assert pinned.index("user rule: answer in French") < pinned.index("root rule: be careful")
    assert f"from {path}" in pinned


def test_no_user_file_means_nothing_pinned(tmp_path):
    assert user_memory(tmp_path / "missing" / "AGENTS.md") is None
    blank = tmp_path / "AGENTS.md"
    blank.write_text("  \n")
    assert user_memory(blank) is None


def test_compaction_keeps_and_a_resume_remembers_what_was_shown(make_repo, write_script, tool_call):
    root = make_repo(FILES)
    script = write_script(
        [
            tool_call("read_file", "c1", path="web/app.js"),
            tool_call("read_file", "c2", path="README.md"),
            tool_call("read_file", "c3", path="README.md"),
            tool_call("read_file", "c4", path="README.md"),
            tool_call("read_file", "c5", path="README.md"),
            tool_call("finish", "c6", summary="done"),
        ]
    )
    agent, _ = run(root, script)
    assert agent.compact()
    summary = agent.context.turns[1]["content"]
    assert "Folder instructions shown earlier" in summary and "web rule: use tabs" in summary
    resumed = FolderMemory.resumed(root, agent.context.turns)
    assert set(resumed.shown) == {"web/AGENTS.md"}
    assert "web rule" not in resumed.note("read_file", {"path": "web/app.js"})
    assert "ui rule" in resumed.note("read_file", {"path": "web/ui/menu.js"})
