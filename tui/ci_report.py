"""What a CI run of ``codeagent fix`` tells the issue: the GitHub Action's report step.

``python -m codeagent.tui.ci_report --result FILE --exit-code N [--issue N] [--run-url URL]``
reads the result ``fix --json`` wrote (or notes that there is none: codeagent could not
start, or the file is not a result) and

- writes the step's outputs to ``$GITHUB_OUTPUT``: ``status``, ``pull-request``,
  ``message`` and ``transcript``, each on one line (a newline in a value would forge the
  next output);
- appends the report to ``$GITHUB_STEP_SUMMARY`` (the job's summary page);
- with ``--issue``, posts the report as a comment on that issue through ``GitHubClient``
  (``GH_TOKEN`` or ``GITHUB_TOKEN``, retries on the API's failures), and exits 1 with one
  line when it cannot.

The report names the outcome first: the pull request when one was opened, else the status
and the reason. Text that came from the run (its message, file names) is untrusted: it
goes inside a code fence longer than any run of backticks in it, so it cannot turn into
links, mentions or markup, and every known secret of this process is redacted from the
whole report before it leaves (``KnownSecrets``; the result was already redacted by
``fix``).

Limits: one comment per run (a rerun comments again); the report is English only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from codeagent.agent.github import GitHubClient, GitHubError
from codeagent.sandbox.secrets import KnownSecrets

MESSAGE_CHARS = 3000
OUTPUT_CHARS = 1000
EXIT_MEANINGS = {
    0: "resolved",
    1: "no acceptable fix",
    2: "usage or configuration error",
    3: "internal or model error",
    4: "refused",
    130: "interrupted",
}


def load_result(path: Path) -> dict[str, Any] | None:
    """The result object in ``path``, or None when there is none to read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("status"), str) else None


def report(result: dict[str, Any] | None, exit_code: int, run_url: str = "") -> str:
    """The Markdown report of one run."""
    run = f"\n\nRun: {run_url}" if run_url else ""
    if result is None:
        meaning = EXIT_MEANINGS.get(exit_code, "unexpected exit status")
        return (
            f"**codeagent** ended without a result (exit {exit_code}: {meaning}); "
            f"the run's log says why.{run}"
        )
    status, pull = result["status"], str(result.get("pull_request") or "")
    if pull.startswith("https://") or pull.startswith("http://"):
        head = f"**codeagent** opened a pull request for this issue: {pull}"
    else:
        head = f"**codeagent** did not open a pull request: **{_word(status)}** (exit {exit_code})."
    lines = [head, "", *_facts(result), "", _fenced(str(result.get("message") or "")[:MESSAGE_CHARS])]
    return "\n".join(lines) + run


def _facts(result: dict[str, Any]) -> list[str]:
    facts = []
    if result.get("branch"):
        facts.append(f"branch {_code(str(result['branch']))}")
    files = result.get("files_changed") or []
    if files:
        facts.append(f"{len(files)} file{'s' * (len(files) != 1)} changed")
    for label, key in (("tests before", "tests_before"), ("after", "tests_after")):
        tests = result.get(key)
        if isinstance(tests, dict) and tests.get("detected"):
            facts.append(f"{label}: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed")
    if result.get("confinement"):
        facts.append(f"sandbox: {_word(str(result['confinement']))}")
    if result.get("steps"):
        facts.append(f"{result['steps']} steps")
    if isinstance(result.get("wall_time_s"), int | float):
        facts.append(f"{result['wall_time_s']:.0f} s")
    return [" · ".join(facts)] if facts else []


def _word(text: str) -> str:
    return re.sub(r"[^a-z+-]", "", text.lower())[:30] or "unknown"


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _fenced(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def outputs(result: dict[str, Any] | None) -> dict[str, str]:
    result = result or {}
    values = {
        "status": result.get("status") or "none",
        "pull-request": result.get("pull_request") or "",
        "message": result.get("message") or "",
        "transcript": result.get("transcript") or "",
    }
    return {name: " ".join(str(value).split())[:OUTPUT_CHARS] for name, value in values.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codeagent.tui.ci_report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--result", type=Path, required=True, metavar="FILE", help="what fix --json printed")
    parser.add_argument("--exit-code", type=int, required=True, metavar="N", help="fix's exit status")
    parser.add_argument("--issue", type=int, metavar="N", help="comment on this issue")
    parser.add_argument(
        "--run-url", default="", metavar="URL", help="the workflow run, linked from the report"
    )
    args = parser.parse_args(argv)
    result = load_result(args.result)
    secrets = KnownSecrets.gather(None, os.environ)
    body = secrets.redact(report(result, args.exit_code, args.run_url))
    _append(
        os.environ.get("GITHUB_OUTPUT"),
        "".join(f"{k}={secrets.redact(v)}\n" for k, v in outputs(result).items()),
    )
    _append(os.environ.get("GITHUB_STEP_SUMMARY"), body + "\n")
    if args.issue is None:
        return 0
    try:
        url = GitHubClient.from_env().post_comment(args.issue, body)
    except GitHubError as err:
        print(f"codeagent: cannot comment on issue #{args.issue}: {err}", file=sys.stderr)
        return 1
    print(f"codeagent: commented on issue #{args.issue}: {url}", file=sys.stderr)
    return 0


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(text)


if __name__ == "__main__":
    sys.exit(main())
