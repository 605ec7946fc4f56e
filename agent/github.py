"""A small GitHub REST client: read an issue with its comments, open a pull request.

Configured the way GitHub Actions sets the environment: ``GITHUB_API_URL`` (default the
public API), ``GITHUB_REPOSITORY`` (``owner/name``) and ``GITHUB_TOKEN``; the wiring passes
them in. Comments are followed across pages through ``Link`` headers. Errors carry the
API's own message and a hint for the usual causes (401/403: the token; 404: the number or
the repository), never the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from codeagent.sandbox.git import git

PUBLIC_API = "https://api.github.com"
REMOTE_URL = re.compile(r"(?:github\.com[:/]|^[^:/]+:)(?P<repo>[\w.-]+/[\w.-]+?)(?:\.git)?/?$")


class GitHubError(Exception):
    pass


@dataclass(slots=True)
class Issue:
    number: int
    title: str
    body: str
    url: str = ""
    labels: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def repo_from_remote(root: Path, remote: str = "origin") -> str | None:
    """``owner/name`` from a GitHub remote URL (https or ssh form), or None."""
    url = git(["remote", "get-url", remote], root, check=False).strip()
    match = REMOTE_URL.search(url) if "github" in url else None
    return match.group("repo") if match else None


class GitHubClient:
    def __init__(self, api_url: str, token: str | None, repo: str, timeout_s: float = 30.0) -> None:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise GitHubError(f"repository must be OWNER/NAME, not {repo!r}")
        self.repo = repo
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def get_issue(self, number: int) -> Issue:
        data = self._json("GET", f"/repos/{self.repo}/issues/{number}", what=f"issue #{number}")
        comments = [
            str(c.get("body") or "") for c in self._pages(f"/repos/{self.repo}/issues/{number}/comments")
        ]
        labels = [str(label.get("name")) for label in data.get("labels") or [] if isinstance(label, dict)]
        return Issue(
            number,
            str(data.get("title") or ""),
            str(data.get("body") or ""),
            str(data.get("html_url") or ""),
            labels,
            comments,
        )

    def create_pull_request(self, head: str, base: str, title: str, body: str) -> str:
        payload = {"head": head, "base": base, "title": title, "body": body}
        data = self._json("POST", f"/repos/{self.repo}/pulls", what="pull request", json=payload)
        return str(data.get("html_url") or data.get("url") or "")

    def _pages(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        url: str | None = f"{path}?per_page=100"
        while url:
            response = self._send("GET", url, what="comments")
            items += response.json()
            url = response.links.get("next", {}).get("url")
        return items

    def _json(self, method: str, path: str, what: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        data = self._send(method, path, what, json).json()
        if not isinstance(data, dict):
            raise GitHubError(f"{what}: unexpected answer from the GitHub API")
        return data

    def _send(self, method: str, url: str, what: str, json: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, url, json=json)
        except httpx.HTTPError as err:
            raise GitHubError(f"cannot reach the GitHub API at {self._http.base_url}: {err}") from err
        if response.status_code >= 400:
            raise GitHubError(_explain(response, what, self.repo))
        return response


def _explain(response: httpx.Response, what: str, repo: str) -> str:
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        message = response.text[:200]
    hint = {
        401: "check GITHUB_TOKEN",
        403: "the token lacks permission, or the rate limit was hit",
        404: f"no such {what} in {repo}, or the token cannot see it",
    }.get(response.status_code, "")
    return f"{what}: GitHub API answered {response.status_code} {message}".rstrip() + (
        f" ({hint})" if hint else ""
    )
