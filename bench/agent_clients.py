"""The real Claude Code and Codex CLIs, installed from npm and run offline against a codeagent server.

``install`` puts ``@anthropic-ai/claude-code`` and ``@openai/codex`` into one folder (by
default ``agent-clients`` in codeagent's cache folder, ``~/.cache/codeagent``) with npm,
once: a later call finds the commands there and installs nothing. npm's own cache goes in
that folder too. ``ClientsMissing`` says why they cannot be had (no node or npm, an install that failed,
offline with no mirror), so tests can skip with the reason.

``Claude`` and ``Codex`` run one non-interactive turn each (``claude -p``, ``codex exec``),
continuing the last session from the second turn on (``--continue``, ``exec resume --last``).
Each runs in its own temporary home: a fresh ``HOME`` (and ``CODEX_HOME``), an environment
built from nothing (no inherited keys, proxies or settings), a made-up key, telemetry,
update checks and other traffic off, the server's 127.0.0.1 address as the only endpoint,
and the working directory the caller gives (a temporary one). Claude Code may only use its
read-only tools there (``--allowedTools``) unless the caller allows more (``allowed_tools``;
with ``Write`` it writes where the served model says, so callers allow it only for a scripted
model that names the temporary working directory). Codex runs with ``approval_policy =
"never"`` and its read-only sandbox (or, when asked, ``workspace-write``: the working
directory and the temporary folders), so whatever a model asks for, Codex writes nothing
outside the temporary folders. ``codex_model`` writes a catalog entry for the served model,
which Codex's own catalog does not know: with ``apply_patch_tool_type = "freeform"`` Codex
offers ``apply_patch`` as a custom (freeform) tool.

Limits: the versions are whatever the registry (or its mirror) has when the folder is first
filled; delete the folder to take newer ones. Linux x64 and arm64 only (Codex's binary).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeagent import xdg

PACKAGES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex"}
KEY = "sk-codeagent-local-not-a-secret"
CLAUDE_READ_ONLY = "Read,Glob,Grep,LS"


class ClientsMissing(Exception):
    """The CLIs cannot be installed or found here; the message says why."""


def default_folder() -> Path:
    return xdg.folder("cache") / "agent-clients"


def install(folder: Path | None = None, timeout_s: float = 900) -> Path:
    """The ``node_modules/.bin`` folder holding ``claude`` and ``codex``, installed there once."""
    folder = folder or default_folder()
    bin_dir = folder / "node_modules" / ".bin"
    if all((bin_dir / name).exists() for name in PACKAGES):
        return bin_dir
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise ClientsMissing("node and npm are needed to install Claude Code and Codex")
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "npm_config_cache": str(folder / "npm-cache"), "npm_config_update_notifier": "false"}
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), *PACKAGES.values()]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise ClientsMissing(f"npm install took over {timeout_s:.0f} s (offline, no mirror?)") from err
    if done.returncode != 0 or not all((bin_dir / name).exists() for name in PACKAGES):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ClientsMissing(f"npm install failed (offline, no mirror?): {' / '.join(tail)}")
    return bin_dir


def versions(bin_dir: Path) -> dict[str, str]:
    """Each package's installed version, from its ``package.json``."""
    modules = bin_dir.parent
    return {
        name: json.loads((modules / package / "package.json").read_text())["version"]
        for name, package in PACKAGES.items()
    }


def _base_env(home: Path) -> dict[str, str]:
    node = Path(shutil.which("node") or "/usr/bin/node").parent
    return {
        "PATH": f"{node}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run a CLI in its own process group, all of which is killed if it outlives ``timeout_s``
    (Codex's node wrapper leaves its native binary behind otherwise)."""
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@dataclass
class Turn:
    """One finished turn of a CLI: its exit status, its answer (the last message) and its output."""

    returncode: int
    answer: str
    stdout: str
    stderr: str


@dataclass
class Claude:
    """Claude Code against ``url`` (the server's root, without ``/v1``) serving ``model``."""

    bin_dir: Path
    home: Path
    workdir: Path
    url: str
    model: str
    timeout_s: float = 600
    extra_env: dict[str, str] = field(default_factory=dict)  # more settings, on top of ours
    allowed_tools: str = CLAUDE_READ_ONLY  # comma-separated; with "Write" it writes where the model says
    turns: int = field(default=0, init=False)

    def env(self) -> dict[str, str]:
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        return {
            **_base_env(self.home),
            "CLAUDE_CONFIG_DIR": str(self.home / ".claude"),
            "ANTHROPIC_BASE_URL": self.url,
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_MODEL": self.model,
            "ANTHROPIC_SMALL_FAST_MODEL": self.model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": self.model,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": self.model,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": self.model,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_BUG_COMMAND": "1",
            "DISABLE_COST_WARNINGS": "1",
            "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
            "API_TIMEOUT_MS": str(int(self.timeout_s * 1000)),
        } | self.extra_env

    def turn(self, prompt: str, resume: bool = True) -> Turn:
        """One turn: the last session continued (from the second turn on, unless not ``resume``)."""
        command = [str(self.bin_dir / "claude"), "-p", prompt, "--output-format", "json"]
        command += ["--model", self.model, "--allowedTools", self.allowed_tools]
        command += ["--continue"] if self.turns and resume else []
        done = _run(command, self.workdir, self.env(), self.timeout_s)
        self.turns += 1
        try:
            answer = str(json.loads(done.stdout).get("result", ""))
        except ValueError:
            answer = ""
        return Turn(done.returncode, answer, done.stdout, done.stderr)


def codex_model(model: str, **fields: Any) -> dict[str, Any]:
    """A model catalog entry for Codex: how it shapes its tools and prompt for the served
    model, which its own catalog does not know (``fields`` such as ``apply_patch_tool_type``)."""
    return {
        "slug": model,
        "display_name": model,
        "description": "served by codeagent",
        "base_instructions": "You are a coding agent working in the user's folder. Use the tools.",
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 1,
        "context_window": 200000,
        "supported_reasoning_levels": [],
        "default_reasoning_level": None,
        "input_modalities": ["text"],
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": False,
        "support_verbosity": False,
        "experimental_supported_tools": [],
        **fields,
    }


def codex_config(
    url: str,
    model: str,
    features: dict[str, bool] | None = None,
    catalog: str = "",
    sandbox: str = "read-only",
) -> str:
    """``config.toml`` for a provider at ``url`` (ending in ``/v1``) speaking Responses."""
    toggles = "".join(f"{name} = {str(on).lower()}\n" for name, on in (features or {}).items())
    listed = f"model_catalog_json = {json.dumps(catalog)}\n" if catalog else ""
    return f"""model = "{model}"
{listed}model_provider = "codeagent"
approval_policy = "never"
sandbox_mode = "{sandbox}"
check_for_update_on_startup = false

[model_providers.codeagent]
name = "codeagent serve"
base_url = "{url}"
wire_api = "responses"
env_key = "CODEAGENT_API_KEY"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 900000

[history]
persistence = "none"

[analytics]
enabled = false

[features]
{toggles}"""


@dataclass
class Codex:
    """Codex against ``url`` (the server's ``/v1`` URL) serving ``model``."""

    bin_dir: Path
    home: Path
    workdir: Path
    url: str
    model: str
    timeout_s: float = 600
    features: dict[str, bool] = field(default_factory=dict)  # Codex's [features] toggles
    extra_env: dict[str, str] = field(default_factory=dict)  # more settings, on top of ours
    model_info: dict[str, Any] | None = None  # the served model's catalog entry (``codex_model``)
    sandbox: str = "read-only"  # or "workspace-write": the working directory (and temp folders)
    turns: int = field(default=0, init=False)

    def env(self) -> dict[str, str]:
        codex_home = self.home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        catalog = ""
        if self.model_info is not None:
            catalog = str(codex_home / "models.json")
            Path(catalog).write_text(json.dumps({"models": [self.model_info]}))
        (codex_home / "config.toml").write_text(
            codex_config(self.url, self.model, self.features, catalog, self.sandbox)
        )
        return {
            **_base_env(self.home),
            "CODEX_HOME": str(codex_home),
            "CODEAGENT_API_KEY": KEY,
        } | self.extra_env

    def turn(self, prompt: str, resume: bool = True) -> Turn:
        """One turn: the last session resumed (from the second turn on, unless not ``resume``)."""
        last = self.home / f"answer-{self.turns}.txt"
        command = [str(self.bin_dir / "codex"), "exec"]
        command += ["resume", "--last"] if self.turns and resume else []
        command += ["--skip-git-repo-check", "--output-last-message", str(last), prompt]
        done = _run(command, self.workdir, self.env(), self.timeout_s)
        self.turns += 1
        answer = last.read_text() if last.exists() else ""
        return Turn(done.returncode, answer, done.stdout, done.stderr)
