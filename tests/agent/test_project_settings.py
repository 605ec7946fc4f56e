"""Project settings (``.codeagent/config.toml``) merged over the user's config: a project may only
narrow; a bad file is one error line. Real repositories; ``codeagent fix`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeagent.agent.config import Config
from codeagent.agent.project import ProjectConfigError, load_project
from codeagent.agent.settings import CommandLine, resolve
from codeagent.sandbox.confine import probe
from codeagent.tui.cli import main

SANDBOX_MISSING = probe()


def project(root: Path, text: str) -> Path:
    (root / ".codeagent").mkdir(exist_ok=True)
    path = root / ".codeagent" / "config.toml"
    path.write_text(text)
    return path


def user(text: str = "") -> Config:
    import tomllib

    return Config.model_validate(tomllib.loads(text))


def test_no_file_means_defaults_and_user_values(tmp_path):
    assert load_project(tmp_path) is None
    settings = resolve(user("[tools]\ntest_command = 'make test'\n"), tmp_path, "tui", CommandLine())
    rows = {name: (value, source) for name, value, source in settings.rows()}
    assert rows["mode"] == ("ask", "default")
    assert rows["test command"] == ("make test", "user config")
    assert rows["max steps"] == ("60", "default")
    assert settings.project_file is None and settings.notices == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("colour = 'red'\n", "config.toml: colour: unknown key"),
        ("[tools]\ntest_comand = 'x'\n", "config.toml: tools.test_comand: unknown key"),
        ("[tools]\ntest_command = 5\n", "config.toml: tools.test_command: Input should be a valid string"),
        ("mode = 'yolo'\n", "config.toml: mode: Input should be"),
        ("[limits]\nmax_steps = -1\n", "config.toml: limits.max_steps: Input should be greater than 0"),
        ("mode = \n", "config.toml: cannot read it: "),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_key(tmp_path, text, where):
    project(tmp_path, text)
    with pytest.raises(ProjectConfigError) as caught:
        load_project(tmp_path)
    assert where in str(caught.value) and "\n" not in str(caught.value)


def test_a_linked_settings_folder_is_not_read(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.toml").write_text("mode = 'read-only'\n")
    root = tmp_path / "repo"
    root.mkdir()
    os.symlink(elsewhere, root / ".codeagent")
    with pytest.raises(ProjectConfigError, match="is a link"):
        load_project(root)


def test_the_mode_may_only_get_stricter(tmp_path):
    project(tmp_path, "mode = 'read-only'\n")
    strict = resolve(Config(), tmp_path, "tui", CommandLine())
    assert strict.mode == "read-only" and strict.sources["mode"] == "project config"
    project(tmp_path, "mode = 'full-auto'\n")
    loose = resolve(Config(), tmp_path, "tui", CommandLine())
    assert loose.mode == "ask" and loose.sources["mode"] == "default"
    assert "mode 'full-auto' set aside: it allows more than your 'ask' (default)" in loose.notices[0]
    mine = resolve(user("mode = 'full-auto'\n"), tmp_path, "tui", CommandLine())
    assert mine.mode == "full-auto" and mine.sources["mode"] == "user config" and not mine.notices
    project(tmp_path, "mode = 'auto-edit'\n")
    headless = resolve(Config(), tmp_path, "fix", CommandLine())
    assert headless.mode == "auto-edit"  # stricter than fix's full-auto
    given = resolve(Config(), tmp_path, "fix", CommandLine(mode="full-auto"))
    assert given.mode == "full-auto" and given.sources["mode"] == "command line"
    assert "--mode full-auto was given" in given.notices[0]


def test_commands_only_with_the_sandbox_on(tmp_path):
    project(tmp_path, "[tools]\ntest_command = 'pytest -x'\nsetup_command = 'make deps'\n")
    confined = resolve(Config(), tmp_path, "fix", CommandLine())
    assert confined.config.tools.test_command == "pytest -x" and confined.setup_command == "make deps"
    assert confined.sources["test command"] == confined.sources["setup command"] == "project config"
    bare = resolve(user("[tools]\ntest_command = 'mine'\n"), tmp_path, "fix", CommandLine(sandbox=False))
    assert bare.config.tools.test_command == "mine" and bare.setup_command is None
    assert len(bare.notices) == 2 and all("the sandbox is off" in line for line in bare.notices)
    flag = resolve(Config(), tmp_path, "fix", CommandLine(test_command="tox"))
    assert flag.config.tools.test_command == "tox" and flag.sources["test command"] == "command line"


def test_limits_and_timeout_only_lower(tmp_path):
    project(
        tmp_path,
        "[limits]\nmax_steps = 10\nmax_wall_s = 99999\n[tools]\ncommand_timeout = 30\nrepo_map_tokens = 512\n",
    )
    settings = resolve(user("[limits]\nmax_wall_s = 600\n"), tmp_path, "fix", CommandLine())
    limits = settings.config.limits
    assert limits.max_steps == 10 and limits.max_wall_s == 600
    assert settings.config.tools.command_timeout == 30 and settings.config.tools.repo_map_tokens == 512
    assert settings.sources["max time"] == "user config" and settings.sources["max steps"] == "project config"
    assert settings.notices == [".codeagent/config.toml: max time 99999 set aside: higher than your 600"]
    flags = resolve(Config(), tmp_path, "fix", CommandLine(limits={"max_steps": 99}))
    assert flags.config.limits.max_steps == 99 and flags.sources["max steps"] == "command line"


def test_mcp_tools_only_for_servers_the_user_trusts(tmp_path):
    servers = {
        "docs": {"command": "docs-server", "args": ["--x"]},
        "evil": {"command": "curl", "args": ["evil.example"]},
        "mine": {"command": "other"},
    }
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": servers}))
    project(tmp_path, "[mcp]\nallowed_tools = ['docs__*', 'evil__*', 'mine__*', '*']\n")
    config = user(
        "[mcp.servers.mine]\ncommand = 'mine-server'\n"
        "[[mcp.trusted_project_servers]]\ncommand = 'docs-server'\nargs = ['--x']\n"
    )
    settings = resolve(config, tmp_path, "fix", CommandLine())
    assert settings.config.mcp.allowed_tools == ["docs__*"]
    assert settings.sources["MCP tools allowed"] == "project config"
    assert [line.split("'")[1] for line in settings.notices] == ["evil__*", "mine__*", "*"]
    assert config.mcp.allowed_tools == []  # the user's own config object is left as it was


def test_cli_prints_one_error_line_for_a_bad_project_file(make_repo, capsys):
    root = make_repo()
    project(root, "[tools]\ntest_command = 5\n")
    code = main(["fix", "-C", str(root), "--task", "x", "--model", "scripted:/nonexistent", "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [
        f"codeagent: error: {root}/.codeagent/config.toml: tools.test_command: Input should be a valid string"
    ]
    assert json.loads(out)["status"] == "error" and "Traceback" not in err


@pytest.mark.skipif(SANDBOX_MISSING is not None, reason=f"the sandbox cannot run here: {SANDBOX_MISSING}")
def test_fix_runs_the_projects_setup_and_test_commands_in_the_sandbox(make_repo, write_script, fix_script):
    root = make_repo()
    project(
        root,
        "mode = 'full-auto'\n[tools]\ntest_command = 'python -m pytest -q -p no:cacheprovider'\n"
        "setup_command = 'echo set-up > .setup-ran'\n",
    )
    (root / ".gitignore").write_text(".setup-ran\n__pycache__/\n")
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "settings"], check=True)
    script = write_script(fix_script)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeagent.tui.cli",
            "fix",
            "--task",
            "fix mean",
            "--json",
            "--model",
            f"scripted:{script}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["tests_before"]["command"].startswith("python -m pytest -q -p no:cacheprovider")
    assert (root / ".setup-ran").read_text() == "set-up\n"
    records = [json.loads(line) for line in Path(result["transcript"]).read_text().splitlines()]
    task = next(r["message"]["content"] for r in records if r.get("message", {}).get("role") == "user")
    assert "setup command `echo set-up" in task and "exit code 0" in task
