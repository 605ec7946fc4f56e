"""The GitHub client against a real HTTP server on 127.0.0.1, ``repo_from_remote`` on real
git repositories, and the issue sources built on them."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from codeagent.agent import issues
from codeagent.agent.github import GitHubClient, GitHubError, parse_remote_url, repo_from_remote
from codeagent.agent.github_retry import RetryPolicy

TOKEN = "ghp_testtoken123"
COMMENTS = [{"body": f"comment {n}"} for n in range(5)]
ISSUE = {
    "number": 42,
    "title": "mean() is off by one",
    "body": "mean([1, 2, 3]) returns 3.",
    "html_url": "https://github.com/octo/stats/issues/42",
    "labels": [{"name": "bug"}, {"name": "good first issue"}],
}


class FakeGitHub:
    """Serves octo/stats issue 42, its comments two to a page, and records what it is sent."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[dict[str, Any]] = []
        self.next_link_host = url  # where "next" links point

    def answer(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        if self.requests[-1]["auth"] != f"Bearer {TOKEN}":
            return 401, {"message": "Bad credentials"}, {}
        if method == "POST" and path == "/repos/octo/stats/pulls":
            return 201, {"number": 7, "html_url": "https://github.com/octo/stats/pull/7"}, {}
        if path == "/repos/octo/stats/issues/42":
            return 200, ISSUE, {}
        if path == "/repos/octo/stats/issues/42/comments":
            page = int(query.get("page", ["1"])[0])
            items = COMMENTS[(page - 1) * 2 : page * 2]
            more = page * 2 < len(COMMENTS)
            link = f'<{self.next_link_host}{path}?per_page=2&page={page + 1}>; rel="next"' if more else ""
            return 200, items, {"Link": link} if link else {}
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}


def handler_for(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve("GET", None)

        def do_POST(self) -> None:
            self._serve("POST", json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def _serve(self, method: str, body: Any) -> None:
            parts = urlsplit(self.path)
            fake.requests.append(
                {"method": method, "path": self.path, "body": body, "auth": self.headers.get("Authorization")}
            )
            status, data, headers = fake.answer(method, parts.path, parse_qs(parts.query))
            raw = json.dumps(data).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    fake = FakeGitHub(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = handler_for(fake)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def client(github: FakeGitHub, token: str | None = TOKEN, repo: str = "octo/stats") -> GitHubClient:
    return GitHubClient(api_url=github.url, token=token, repo=repo)


def test_an_issue_comes_with_all_its_comments_across_pages(github: FakeGitHub) -> None:
    issue = client(github).get_issue(42)
    assert (issue.number, issue.title, issue.body) == (42, ISSUE["title"], ISSUE["body"])
    assert issue.url == ISSUE["html_url"] and issue.labels == ["bug", "good first issue"]
    assert issue.comments == [f"comment {n}" for n in range(5)]
    comment_pages = [r["path"] for r in github.requests if "/comments" in r["path"]]
    assert len(comment_pages) == 3 and comment_pages[0] == "/repos/octo/stats/issues/42/comments?per_page=100"


def test_a_next_link_to_another_host_is_not_followed(github: FakeGitHub) -> None:
    github.next_link_host = "http://attacker.example"
    with pytest.raises(GitHubError, match="another host"):
        client(github).get_issue(42)


def test_a_missing_issue_is_a_404_with_the_apis_message(github: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        client(github).get_issue(7)
    message = str(caught.value)
    assert message.startswith("issue #7: the GitHub API answered 404: Not Found")
    assert "no such issue #7 in octo/stats" in message


def test_bad_credentials_are_a_401_that_points_at_the_token(github: FakeGitHub) -> None:
    with pytest.raises(
        GitHubError, match=r"401: Bad credentials \(is GH_TOKEN or GITHUB_TOKEN set and valid\?\)"
    ) as caught:
        client(github, token="ghp_wrong_token").get_issue(42)
    assert "ghp_wrong_token" not in str(caught.value)


def test_an_unreachable_api_is_a_clear_error_after_its_retries() -> None:
    waits: list[float] = []
    retry = RetryPolicy(attempts=3, sleep=waits.append)
    unreachable = GitHubClient(api_url="http://127.0.0.1:9", token=TOKEN, repo="octo/stats", retry=retry)
    with pytest.raises(GitHubError, match=r"cannot reach the GitHub API at http://127\.0\.0\.1:9") as caught:
        unreachable.get_issue(1)
    assert "(after 3 attempts over" in str(caught.value) and len(waits) == 2
    assert TOKEN not in str(caught.value)


def test_creating_a_pull_request_sends_head_base_title_and_body(github: FakeGitHub) -> None:
    url = client(github).create_pull_request("codeagent/issue-42", "main", "Fix #42: mean", "Closes #42.")
    assert url == "https://github.com/octo/stats/pull/7"
    (request,) = github.requests
    assert (request["method"], request["path"], request["auth"]) == (
        "POST",
        "/repos/octo/stats/pulls",
        f"Bearer {TOKEN}",
    )
    assert request["body"] == {
        "head": "codeagent/issue-42",
        "base": "main",
        "title": "Fix #42: mean",
        "body": "Closes #42.",
    }


def test_a_repository_name_must_be_owner_slash_name() -> None:
    with pytest.raises(GitHubError, match="OWNER/NAME"):
        GitHubClient(repo="just-a-name")


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("https://github.com/octo/stats.git", "octo/stats"),
        ("https://x-access-token:abc@github.com/octo/stats", "octo/stats"),
        ("git@github.com:octo/stats.git", "octo/stats"),
        ("ssh://git@github.com/octo/stats.git", "octo/stats"),
        ("git@github.example.com:team/tool.js.git", "team/tool.js"),
        ("https://gitlab.com/octo/stats.git", None),
        ("/srv/git/stats.git", None),
        ("", None),
    ],
)
def test_remote_urls_parse_to_owner_and_name(url: str, repo: str | None) -> None:
    assert parse_remote_url(url) == repo


def test_repo_from_remote_reads_origin_of_a_real_repository(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert repo_from_remote(tmp_path) is None
    subprocess.run(
        ["git", "-C", str(tmp_path), "remote", "add", "origin", "git@github.com:octo/stats.git"], check=True
    )
    assert repo_from_remote(tmp_path) == "octo/stats"
    subprocess.run(
        ["git", "-C", str(tmp_path), "remote", "set-url", "origin", "https://github.com/octo/other.git"],
        check=True,
    )
    assert repo_from_remote(tmp_path) == "octo/other"


def test_from_github_resolves_the_repository_from_origin(github: FakeGitHub, tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "remote", "add", "origin", "https://github.com/octo/stats"], check=True
    )
    issue = issues.from_github(42, api_url=github.url, token=TOKEN, root=tmp_path)
    assert (issue.number, issue.title, issue.source) == (42, ISSUE["title"], "github:octo/stats")
    task = issues.format_task(issue)
    assert task.startswith("Fix the issue below") and "Issue #42: mean() is off by one" in task
    assert "Labels: bug, good first issue" in task and "Comment 5:\ncomment 4" in task
    same = issues.from_github(42, client(github))
    assert same == issue


def test_issue_files_in_markdown_and_json(tmp_path: Path) -> None:
    markdown = tmp_path / "issue.md"
    markdown.write_text("Reported by QA.\n# mean() is off\n\nIt divides by n-1.\n")
    issue = issues.from_file(markdown)
    assert (issue.number, issue.title, issue.body) == (
        None,
        "mean() is off",
        "Reported by QA.\n\nIt divides by n-1.",
    )
    plain = tmp_path / "plain.txt"
    plain.write_text("mean() is off\nIt divides by n-1.\n")
    assert issues.from_file(plain).title == "mean() is off"
    data = tmp_path / "issue.json"
    data.write_text(json.dumps({"number": 9, "title": "Crash on empty list", "body": "mean([]) raises"}))
    issue = issues.from_file(data)
    assert (issue.number, issue.title, issue.body, issue.source) == (
        9,
        "Crash on empty list",
        "mean([]) raises",
        f"file:{data}",
    )
    assert issues.format_task(issue).startswith(
        "Fix the issue below, as reported by its author.\n\nIssue #9:"
    )
    data.write_text('{"body": "no title"}')
    with pytest.raises(issues.IssueError, match="'title'"):
        issues.from_file(data)


def test_text_tasks_keep_their_whole_text() -> None:
    issue = issues.from_text("  fix mean  ")
    assert (issue.title, issue.body, issue.source) == ("fix mean", "fix mean", "text")
    assert issues.format_task(issue) == "fix mean"
    longer = issues.from_text("fix mean\nit divides by n-1")
    assert longer.title == "fix mean" and issues.format_task(longer) == "fix mean\nit divides by n-1"
    with pytest.raises(issues.IssueError, match="empty"):
        issues.from_text(" \n ")
