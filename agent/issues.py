"""Where a task comes from: a GitHub issue, a file, or text; and how it reads to the model.

- ``from_github``: an issue and its comments, through ``GitHubClient``.
- ``from_file``: Markdown (the first ``# `` heading, or else the first line, is the title;
  the rest is the body) or JSON with ``title`` and ``body`` (and optionally ``number``).
- ``from_text``: a task typed on the command line; its first line doubles as the title.

``format_task`` frames an issue as a report written by its reporter, so the model reads it
as a description of a problem. Framing is no security boundary (confinement is the
sandbox's job), and nothing here trims long issues: the context budget does that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeagent.agent.github import GitHubClient

TITLE_CHARS = 100  # a title longer than this is cut; the full text stays in the body


class IssueError(Exception):
    """An issue file or text that cannot be turned into a task."""


@dataclass(slots=True)
class IssueSpec:
    number: int | None
    title: str
    body: str
    source: str = "text"  # "text", "file:PATH" or "github:OWNER/NAME"
    url: str = ""
    comments: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


def from_github(
    number: int,
    repo: str | GitHubClient | None = None,
    api_url: str | None = None,
    token: str | None = None,
    root: Path | None = None,
) -> IssueSpec:
    """Issue ``number`` of ``repo`` (or a ready ``GitHubClient``). Unset values come from
    ``GITHUB_REPOSITORY`` / the ``origin`` remote of ``root``, ``GITHUB_API_URL`` and
    ``GH_TOKEN`` or ``GITHUB_TOKEN``. Raises ``GitHubError``."""
    if isinstance(repo, GitHubClient):
        client = repo
    else:
        client = GitHubClient.from_env(repo, root, api_url=api_url, token=token)
    issue = client.get_issue(number)
    return IssueSpec(
        number, issue.title, issue.body, f"github:{client.repo}", issue.url, issue.comments, issue.labels
    )


def from_file(path: Path) -> IssueSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise IssueError(f"cannot read issue file {path}: {err}") from err
    if path.suffix.lower() == ".json":
        return _from_json(path, _parse_json(path, text))
    if text.lstrip().startswith("{"):
        try:
            return _from_json(path, json.loads(text))
        except json.JSONDecodeError:
            pass  # Markdown that happens to open with a brace
    return _from_markdown(path, text)


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise IssueError(f"issue file {path} is not valid JSON: {err}") from err


def _from_json(path: Path, data: Any) -> IssueSpec:
    if not isinstance(data, dict) or not isinstance(data.get("title"), str) or not data["title"].strip():
        raise IssueError(f"issue file {path} needs a JSON object with a non-empty string 'title'")
    number = data.get("number")
    return IssueSpec(
        number if isinstance(number, int) and not isinstance(number, bool) else None,
        data["title"].strip(),
        str(data.get("body") or "").strip(),
        f"file:{path}",
    )


def _from_markdown(path: Path, text: str) -> IssueSpec:
    lines = text.strip().splitlines()
    if not lines:
        raise IssueError(f"issue file {path} is empty")
    index = next((n for n, line in enumerate(lines) if line.startswith("# ")), 0)
    title = lines[index].removeprefix("# ").strip()
    body = "\n".join(lines[:index] + lines[index + 1 :]).strip()
    if not title:
        raise IssueError(f"issue file {path} has an empty title line")
    return IssueSpec(None, title[:TITLE_CHARS], body, f"file:{path}")


def from_text(text: str) -> IssueSpec:
    """A task from the command line: the whole text is the body, its first line the title."""
    text = text.strip()
    if not text:
        raise IssueError("the task is empty")
    return IssueSpec(None, text.splitlines()[0].strip()[:TITLE_CHARS], text, "text")


def format_task(issue: IssueSpec) -> str:
    """The task as the model reads it."""
    if issue.source == "text":
        return issue.body or issue.title
    head = f"Issue #{issue.number}: {issue.title}" if issue.number is not None else f"Issue: {issue.title}"
    parts = ["Fix the issue below, as reported by its author.", head]
    if issue.labels:
        parts.append(f"Labels: {', '.join(issue.labels)}")
    if issue.body:
        parts.append(issue.body)
    parts += [f"Comment {n}:\n{comment}" for n, comment in enumerate(issue.comments, 1)]
    return "\n\n".join(parts)
