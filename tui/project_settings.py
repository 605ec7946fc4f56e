"""The command line's part of the settings: what the flags said, handed to ``agent.settings``.

``for_command`` reads the flags of ``fix`` or of the terminal UI (``--mode`` and
``--test-command`` are None when not given, so a project's narrower value can apply and the
source shown in ``/help`` is right) and merges the user's config and the repository's
``.codeagent/config.toml`` (``agent.settings.resolve``; a bad project file raises
``ProjectConfigError``, which ``cli.main`` prints as one ``codeagent: error:`` line, exit 2). ``warn`` prints the notices of a headless command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from codeagent.agent.config import Config
from codeagent.agent.settings import CommandLine, Front, Settings, resolve
from codeagent.tui.inert import inert


def for_command(args: Any, config: Config, front: Front, root: Path) -> Settings:
    cli = CommandLine(
        mode=args.mode,
        test_command=getattr(args, "test_command", None),
        sandbox=args.sandbox != "off",
        sandbox_given=bool(os.environ.get("CODEAGENT_SANDBOX")) or "--sandbox" in sys.argv,
        network=args.network,
        limits={key: getattr(args, key, None) for key in ("max_steps", "max_tokens", "max_wall_s")},
    )
    if getattr(args, "max_time", None):
        cli.limits["max_wall_s"] = args.max_time
    return resolve(config, root, front, cli)  # ProjectConfigError: one error line, exit 2 (cli.main)


def warn(settings: Settings) -> None:
    """The notices, one ``codeagent: warning:`` line each, on stderr (they quote repository text)."""
    for line in settings.notices:
        print(inert(f"codeagent: warning: {line}"), file=sys.stderr)
