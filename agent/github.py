"""A small GitHub REST client: read an issue with its comments, open a pull request, comment.

Configured the way GitHub Actions sets the environment: ``GITHUB_API_URL`` (default the
public API), a token from ``GH_TOKEN`` or else ``GITHUB_TOKEN`` (``token_from_env``: the gh
CLI's order, so a workflow that sets ``GH_TOKEN`` for ``gh`` needs nothing more), and
``GITHUB_REPOSITORY`` (``owner/name``), or else the ``origin`` remote of the checkout
(``repo_from_remote``); ``GitHubClient.from_env`` does that lookup, while the constructor
takes everything explicitly. Comments are followed across pages through ``Link`` headers,
but only on the API's own host, so the token never travels elsewhere. Errors
(``GitHubError``) carry the API's own message and a hint for the usual causes (401/403: the
token; 404: the number or the repository), never the token.

Failed requests are tried again as ``github_retry.RetryPolicy`` says: connection failures,
5xx and rate limits (429, or 403 with GitHub's rate-limit signs) with backoff or the wait the
answer asks for, within a bounded total wait; never other 4xx. A pull request that "already
exists" for the branch (a retried POST that had taken effect, or a rerun that pushed to the
same branch) is looked up and returned instead of failing.

Limits: no GraphQL; remote URLs count as GitHub's only when their host name contains "github".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from codeagent.agent.github_retry import RetryPolicy, is_rate_limited
from codeagent.sandbox.git import git

PUBLIC_API = "https://api.github.com"
MAX_PAGES = 50  # 5,000 comments; a longer chain of "next" links is a server bug
REPO_NAME = re.compile(r"[\w.-]+/[\w.-]+")
SCP_REMOTE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?!//)(?P<path>.+)$")  # git@host:owner/name.git


TOKEN_VARIABLES = ("GH_TOKEN", "GITHUB_TOKEN")  # the gh CLI's order


class GitHubError(Exception):
    """A GitHub request failed; the message says why and what to check."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of the answer, None when there was none


def token_from_env(env: Mapping[str, str]) -> str | None:
    """The GitHub token of ``env``: ``GH_TOKEN``, else ``GITHUB_TOKEN``; None when neither is set."""
    return next((env[name] for name in TOKEN_VARIABLES if env.get(name)), None)


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
        self,
        api_url: str = PUBLIC_API,
        token: str | None = None,
        repo: str = "",
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not REPO_NAME.fullmatch(repo):
            raise GitHubError(f"repository must be OWNER/NAME, not {repo!r}")
        self.repo = repo
        self.retry = retry or RetryPolicy()
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
        ``origin`` remote of ``root``), ``GITHUB_API_URL`` and ``GH_TOKEN`` or ``GITHUB_TOKEN``."""
        env = os.environ if env is None else env
        repo = repo or env.get("GITHUB_REPOSITORY") or (repo_from_remote(root) if root else None)
        if not repo:
            raise GitHubError("cannot tell the GitHub repository: give OWNER/NAME or set GITHUB_REPOSITORY")
        api_url = api_url or env.get("GITHUB_API_URL") or PUBLIC_API
        return cls(api_url, token or token_from_env(env), repo)

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
        """Open a pull request from branch ``head`` into ``base``; return its web URL (that of
        the open one for ``head``, when there is one already)."""
        payload = {"head": head, "base": base, "title": title, "body": body}
        try:
            data = self._object("POST", f"/repos/{self.repo}/pulls", what="pull request", json=payload)
        except GitHubError as err:
            existing = self._open_pull_request(head, base) if "already exists" in str(err) else None
            if existing is None:
                raise
            return existing
        return str(data.get("html_url") or data.get("url") or "")

    def post_comment(self, number: int, body: str) -> str:
        """Comment on issue (or pull request) ``number``; return the comment's web URL."""
        path = f"/repos/{self.repo}/issues/{number}/comments"
        data = self._object("POST", path, what=f"comment on #{number}", json={"body": body})
        return str(data.get("html_url") or "")

    def _open_pull_request(self, head: str, base: str) -> str | None:
        """The web URL of the open pull request from ``head`` into ``base``, or None (also
        when the lookup fails: the caller then reports its own error)."""
        query = urlencode({"state": "open", "head": f"{self.repo.split('/')[0]}:{head}", "base": base})
        try:
            pulls = _decode(self._send("GET", f"/repos/{self.repo}/pulls?{query}", "pull requests"), "")
        except GitHubError:
            return None
        if not isinstance(pulls, list):
            return None
        urls = [
            str(pull.get("html_url")) for pull in pulls if isinstance(pull, dict) and pull.get("html_url")
        ]
        return urls[0] if urls else None

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
        waited = 0.0
        for attempt in range(self.retry.attempts):
            response, failure = self._try(method, url, what, json)
            if response is not None and response.status_code < 400:
                return response
            delay = self.retry.delay(attempt, response)
            status = response.status_code if response is not None else None
            if delay is None or attempt + 1 == self.retry.attempts:
                raise GitHubError(self._redact(failure + _tries(attempt, waited)), status)
            if waited + delay > self.retry.max_wait_s:
                limit = self.retry.max_wait_s
                wait = f" (the API asks to wait {delay:.0f} s; codeagent waits {limit:.0f} s at most)"
                raise GitHubError(self._redact(failure + wait), status)
            self.retry.sleep(delay)
            waited += delay
        raise GitHubError(f"{what}: no attempts allowed (RetryPolicy.attempts < 1)")

    def _try(
        self, method: str, url: str, what: str, json: dict[str, Any] | None
    ) -> tuple[httpx.Response | None, str]:
        """One request: its answer and, when it failed, why (``None`` for no answer at all)."""
        try:
            response = self._http.request(method, url, json=json)
        except httpx.TransportError as err:
            return None, f"{what}: cannot reach the GitHub API at {self.api_url}: {err}"
        except httpx.HTTPError as err:
            raise GitHubError(self._redact(f"{what}: the request to the GitHub API failed: {err}")) from err
        if response.status_code < 400:
            return response, ""
        return response, _explain(response, what, self.repo)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def _tries(attempt: int, waited: float) -> str:
    return f" (after {attempt + 1} attempts over {waited:.0f} s)" if attempt else ""


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
        return " (is GH_TOKEN or GITHUB_TOKEN set and valid?)"
    if status in (403, 429) and is_rate_limited(response):
        return " (rate limit reached; a token raises it)"
    if status == 403 and "not permitted to create" in response.text:
        return (
            " (let GitHub Actions create pull requests: Settings > Actions > General > Workflow permissions)"
        )
    if status == 403:
        return " (the token lacks permission for this)"
    if status == 404:
        return f" (no such {what} in {repo}, or the token cannot see the repository)"
    return ""
