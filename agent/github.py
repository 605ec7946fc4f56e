"""A small GitHub REST client: read an issue with its comments, open a pull request.

Configured the way GitHub Actions sets the environment: ``GITHUB_API_URL`` (default the
public API), ``GITHUB_TOKEN`` and ``GITHUB_REPOSITORY`` (``owner/name``), or else the
``origin`` remote of the checkout (``repo_from_remote``); ``GitHubClient.from_env`` does
that lookup, while the constructor takes everything explicitly. Comments are followed
across pages through ``Link`` headers, but only on the API's own host, so the token never
travels elsewhere. Errors (``GitHubError``) carry the API's own message and a hint for the
usual causes (401/403: the token; 404: the number or the repository), never the token.

Limits: no retries (a failed request fails the command, and the user can rerun it); no
GraphQL; remote URLs count as GitHub's only when their host name contains "github".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from codeagent.sandbox.git import git

PUBLIC_API = "https://api.github.com"
MAX_PAGES = 50  # 5,000 comments; a longer chain of "next" links is a server bug
REPO_NAME = re.compile(r"[\w.-]+/[\w.-]+")
SCP_REMOTE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?!//)(?P<path>.+)$")  # git@host:owner/name.git


class GitHubError(Exception):
    """A GitHub request failed; the message says why and what to check."""


@dataclass(slots=True)
class Issue:
    number: int
    title: str
    body: str
    comments: list[str] = field(default_factory=list)
    url: str = ""
    labels: list[str] = field(default_factory=list)


def parse_remote_url(url: str) -> str | None:
    """``owner/name`` from a GitHub remote URL in https, ssh:// or scp-like form, else None."""
    url = url.strip()
    scp = None if "://" in url else SCP_REMOTE.match(url)
    if scp:
        host, path = scp.group("host"), scp.group("path")
    else:
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git")
    if "github" not in host.lower() or not REPO_NAME.fullmatch(path):
        return None
    return path


def repo_from_remote(root: Path, remote: str = "origin") -> str | None:
    """``owner/name`` of the checkout at ``root`` from its ``remote`` URL, or None."""
    return parse_remote_url(git(["remote", "get-url", remote], root, check=False))


class GitHubClient:
    def __init__(
        self, api_url: str = PUBLIC_API, token: str | None = None, repo: str = "", timeout_s: float = 30.0
    ) -> None:
        if not REPO_NAME.fullmatch(repo):
            raise GitHubError(f"repository must be OWNER/NAME, not {repo!r}")
        self.repo = repo
        self.api_url = api_url.rstrip("/")
        self._token = token
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_env(
        cls,
        repo: str | None = None,
        root: Path | None = None,
        *,
        api_url: str | None = None,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> GitHubClient:
        """A client from the arguments where given, else ``GITHUB_REPOSITORY`` (then the
        ``origin`` remote of ``root``), ``GITHUB_API_URL`` and ``GITHUB_TOKEN``."""
        env = os.environ if env is None else env
        repo = repo or env.get("GITHUB_REPOSITORY") or (repo_from_remote(root) if root else None)
        if not repo:
            raise GitHubError("cannot tell the GitHub repository: give OWNER/NAME or set GITHUB_REPOSITORY")
        api_url = api_url or env.get("GITHUB_API_URL") or PUBLIC_API
        return cls(api_url, token or env.get("GITHUB_TOKEN") or None, repo)

    def close(self) -> None:
        self._http.close()

    def get_issue(self, number: int) -> Issue:
        path = f"/repos/{self.repo}/issues/{number}"
        data = self._object("GET", path, what=f"issue #{number}")
        comments = [str(c.get("body") or "") for c in self._pages(f"{path}/comments", f"issue #{number}")]
        labels = [str(label.get("name")) for label in data.get("labels") or [] if isinstance(label, dict)]
        title, body, url = (str(data.get(key) or "") for key in ("title", "body", "html_url"))
        return Issue(number, title, body, comments, url, labels)

    def create_pull_request(self, head: str, base: str, title: str, body: str) -> str:
        """Open a pull request from branch ``head`` into ``base``; return its web URL."""
        payload = {"head": head, "base": base, "title": title, "body": body}
        data = self._object("POST", f"/repos/{self.repo}/pulls", what="pull request", json=payload)
        return str(data.get("html_url") or data.get("url") or "")

    def _pages(self, path: str, what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        url: str | None = f"{path}?per_page=100"
        for _ in range(MAX_PAGES):
            response = self._send("GET", url, f"comments of {what}")
            page = _decode(response, f"comments of {what}")
            if not isinstance(page, list):
                raise GitHubError(f"comments of {what}: the GitHub API did not answer with a list")
            items += [item for item in page if isinstance(item, dict)]
            url = response.links.get("next", {}).get("url")
            if not url:
                return items
            self._check_same_host(url)
        raise GitHubError(f"comments of {what}: more than {MAX_PAGES} pages")

    def _check_same_host(self, url: str) -> None:
        if urlsplit(url).netloc != urlsplit(self.api_url).netloc:
            raise GitHubError(f"the GitHub API sent a next-page link to another host: {url}")

    def _object(
        self, method: str, path: str, what: str, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data = _decode(self._send(method, path, what, json), what)
        if not isinstance(data, dict):
            raise GitHubError(f"{what}: the GitHub API did not answer with an object")
        return data

    def _send(self, method: str, url: str, what: str, json: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, url, json=json)
        except httpx.HTTPError as err:
            raise GitHubError(
                self._redact(f"{what}: cannot reach the GitHub API at {self.api_url}: {err}")
            ) from err
        if response.status_code >= 400:
            raise GitHubError(self._redact(_explain(response, what, self.repo)))
        return response

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def _decode(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise GitHubError(f"{what}: the GitHub API answered with something that is not JSON") from err


def _explain(response: httpx.Response, what: str, repo: str) -> str:
    try:
        data = response.json()
    except ValueError:
        data = {"message": response.text.strip()[:200]}
    text = _api_message(data) or response.reason_phrase
    return f"{what}: the GitHub API answered {response.status_code}: {text}{_hint(response, what, repo)}"


def _api_message(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    # 422 answers put the useful part in "errors", e.g. "A pull request already exists".
    errors = data.get("errors") if isinstance(data.get("errors"), list) else []
    details = [
        str(error.get("message")) for error in errors if isinstance(error, dict) and error.get("message")
    ]
    return "; ".join(filter(None, [str(data.get("message") or ""), *details]))


def _hint(response: httpx.Response, what: str, repo: str) -> str:
    status = response.status_code
    if status == 401:
        return " (is GITHUB_TOKEN set and valid?)"
    if status == 403 and response.headers.get("X-RateLimit-Remaining") == "0":
        return " (rate limit reached; a GITHUB_TOKEN raises it)"
    if status == 403:
        return " (the token lacks permission for this)"
    if status == 404:
        return f" (no such {what} in {repo}, or the token cannot see the repository)"
    return ""
