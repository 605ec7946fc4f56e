"""Where a task comes from: a GitHub issue, a file, or text; and how it reads to the model.

A file is Markdown (the first ``# `` heading, or else the first line, is the title) or
JSON with ``title`` and ``body``. The task text frames an issue as a report written by its
reporter, so the model reads it as a description of a problem; framing is no security
boundary (that is the sandbox's job).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from codeagent.agent.github import GitHubClient


class IssueError(Exception):
    pass


@dataclass(slots=True)
class IssueSpec:
    title: str
    body: str
    number: int | None = None
    source: str = "text"
    url: str = ""
    comments: list[str] = field(default_factory=list)


def from_github(number: int, client: GitHubClient) -> IssueSpec:
    issue = client.get_issue(number)
    return IssueSpec(issue.title, issue.body, number, f"github:{client.repo}", issue.url, issue.comments)


def from_file(path: Path) -> IssueSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise IssueError(f"cannot read issue file {path}: {err}") from err
    if path.suffix == ".json":
        return _from_json(path, text)
    lines = text.strip().splitlines()
    if not lines:
        raise IssueError(f"issue file {path} is empty")
    heading = next((n for n, line in enumerate(lines) if line.startswith("# ")), None)
    index = heading if heading is not None else 0
    title = lines[index].lstrip("# ").strip()
    body = "\n".join(lines[:index] + lines[index + 1 :]).strip()
    return IssueSpec(title, body, None, f"file:{path}")


def _from_json(path: Path, text: str) -> IssueSpec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise IssueError(f"issue file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("title"), str):
        raise IssueError(f"issue file {path} needs a JSON object with a string 'title'")
    number = data.get("number")
    return IssueSpec(
        data["title"],
        str(data.get("body") or ""),
        number if isinstance(number, int) else None,
        f"file:{path}",
    )


def from_text(text: str) -> IssueSpec:
    text = text.strip()
    if not text:
        raise IssueError("the task is empty")
    first = text.splitlines()[0]
    return IssueSpec(
        first[:100], text if len(text.splitlines()) > 1 or len(first) > 100 else "", None, "text"
    )


def format_task(issue: IssueSpec) -> str:
    if issue.source == "text":
        return issue.body
    head = f"Issue #{issue.number}: {issue.title}" if issue.number else f"Issue: {issue.title}"
    parts = ["Fix the issue below, as reported by its author.", head]
    if issue.body:
        parts.append(issue.body)
    for index, comment in enumerate(issue.comments, 1):
        parts.append(f"Comment {index}:\n{comment}")
    return "\n\n".join(parts)
