"""The GitHub client's retries against a real HTTP server on 127.0.0.1 that fails first (5xx,
a dropped connection, rate limits), its token from ``GH_TOKEN`` or ``GITHUB_TOKEN``, and the
token kept out of every error. Waits are recorded by the policy's ``sleep`` instead of slept."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from codeagent.agent.github import GitHubClient, GitHubError, token_from_env
from codeagent.agent.github_retry import RetryPolicy
from codeagent.sandbox.secrets import KnownSecrets

TOKEN = "ghp_retrytoken0123456789"
ISSUE = {"number": 42, "title": "mean() is off by one", "body": "", "html_url": "https://x/42"}
PULL = "https://github.com/octo/stats/pull/7"
DROP = "drop"  # close the connection without an answer


@dataclass
class Flaky:
    """Answers each request with the next queued failure, then as a healthy API would."""

    url: str = ""
    failures: list[Any] = field(default_factory=list)  # DROP or (status, body, headers)
    requests: list[dict[str, Any]] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)  # pull requests created

    def healthy(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and path.endswith("/pulls"):
            if self.pulls:
                message = f"A pull request already exists for octo:{body['head']}."
                return 422, {"message": "Validation Failed", "errors": [{"message": message}]}, {}
            self.pulls.append(body)
            return 201, {"html_url": PULL}, {}
        if method == "POST" and path.endswith("/comments"):
            return 201, {"html_url": "https://github.com/octo/stats/issues/42#issuecomment-1"}, {}
        if path.startswith("/repos/octo/stats/pulls?"):
            return 200, [{"html_url": PULL}] if self.pulls else [], {}
        if path == "/repos/octo/stats/issues/42":
            return 200, ISSUE, {}
        if path.startswith("/repos/octo/stats/issues/42/comments"):
            return 200, [], {}
        return 404, {"message": "Not Found"}, {}


def handler_for(fake: Flaky) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve(None)

        def do_POST(self) -> None:
            self._serve(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def _serve(self, body: Any) -> None:
            auth = self.headers.get("Authorization")
            fake.requests.append({"method": self.command, "path": self.path, "body": body, "auth": auth})
            planned = fake.failures.pop(0) if fake.failures else None
            if planned == DROP:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, data, headers = planned or fake.healthy(self.command, self.path, body)
            if planned and status >= 500 and body is not None and self.path.endswith("/pulls"):
                fake.pulls.append(body)  # the POST took effect, then the answer was lost
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
def api() -> Iterator[Flaky]:
    fake = Flaky()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def client(api: Flaky, waits: list[float], **policy: Any) -> GitHubClient:
    return GitHubClient(api.url, TOKEN, "octo/stats", retry=RetryPolicy(sleep=waits.append, **policy))


def test_server_errors_and_a_dropped_connection_are_retried_with_growing_waits(api: Flaky) -> None:
    api.failures = [(502, {"message": "Bad Gateway"}, {}), DROP, (503, {}, {})]
    waits: list[float] = []
    issue = client(api, waits).get_issue(42)
    assert issue.title == ISSUE["title"]
    assert [r["path"] for r in api.requests[:4]] == ["/repos/octo/stats/issues/42"] * 4
    assert len(waits) == 3 and 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 2 <= waits[2] <= 4


def test_rate_limits_wait_as_long_as_the_answer_asks(api: Flaky) -> None:
    reset = int(time.time()) + 30
    api.failures = [
        (429, {"message": "slow down"}, {"Retry-After": "7"}),
        (
            403,
            {"message": "API rate limit exceeded"},
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        ),
        (403, {"message": "You have exceeded a secondary rate limit"}, {}),
    ]
    waits: list[float] = []
    client(api, waits, max_wait_s=200).get_issue(42)
    assert waits[0] == 7 and 29 <= waits[1] <= 32 and waits[2] == 60


def test_a_rate_limit_that_resets_later_than_the_budget_fails_at_once(api: Flaky) -> None:
    reset = int(time.time()) + 3600
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    api.failures = [(403, {"message": "API rate limit exceeded"}, headers)]
    waits: list[float] = []
    with pytest.raises(GitHubError, match=r"403: API rate limit exceeded \(rate limit reached") as caught:
        client(api, waits).get_issue(42)
    assert "asks to wait 360" in str(caught.value) and "codeagent waits 120 s at most" in str(caught.value)
    assert waits == [] and len(api.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        (404, {"message": "Not Found"}, {}),
        (403, {"message": "Resource not accessible by integration"}, {}),
        (422, {"message": "Validation Failed"}, {}),
        (401, {"message": "Bad credentials"}, {}),
    ],
)
def test_other_client_errors_are_never_retried(api: Flaky, failure: Any) -> None:
    api.failures = [failure]
    waits: list[float] = []
    with pytest.raises(GitHubError, match=f"answered {failure[0]}: {failure[1]['message']}") as caught:
        client(api, waits).get_issue(42)
    assert waits == [] and len(api.requests) == 1 and caught.value.status == failure[0]


def test_a_server_that_keeps_failing_is_given_up_after_the_attempts(api: Flaky) -> None:
    api.failures = [(500, {"message": f"boom {TOKEN}"}, {})] * 10  # an echo of the token, redacted
    waits: list[float] = []
    with pytest.raises(
        GitHubError, match=r"answered 500: boom \*\*\* \(after 3 attempts over \d+ s\)"
    ) as caught:
        client(api, waits, attempts=3).get_issue(42)
    assert len(api.requests) == 3 and TOKEN not in str(caught.value)


def test_a_pull_request_created_by_a_retried_post_is_found_not_reported(api: Flaky) -> None:
    api.failures = [(502, {"message": "Bad Gateway"}, {})]  # the first POST took effect
    waits: list[float] = []
    url = client(api, waits).create_pull_request("codeagent/issue-42", "main", "Fix #42", "Closes #42.")
    assert url == PULL and len(api.pulls) == 1
    posts = [r for r in api.requests if r["method"] == "POST"]
    lookup = api.requests[-1]["path"]
    assert len(posts) == 2 and "head=octo%3Acodeagent%2Fissue-42" in lookup and "state=open" in lookup


def test_comments_are_posted_to_the_issue(api: Flaky) -> None:
    url = client(api, []).post_comment(42, "codeagent: resolved")
    assert url.endswith("#issuecomment-1")
    assert api.requests[-1]["path"] == "/repos/octo/stats/issues/42/comments"
    assert api.requests[-1]["body"] == {"body": "codeagent: resolved"}


def test_gh_token_comes_first_like_the_gh_cli(api: Flaky) -> None:
    assert token_from_env({"GH_TOKEN": "a" * 10, "GITHUB_TOKEN": "b" * 10}) == "a" * 10
    assert token_from_env({"GH_TOKEN": "", "GITHUB_TOKEN": "b" * 10}) == "b" * 10
    assert token_from_env({}) is None
    env = {"GH_TOKEN": TOKEN, "GITHUB_REPOSITORY": "octo/stats", "GITHUB_API_URL": api.url}
    GitHubClient.from_env(env=env).get_issue(42)
    assert api.requests[0]["auth"] == f"Bearer {TOKEN}"


def test_a_gh_token_is_a_known_secret_and_redacted() -> None:
    secrets = KnownSecrets.gather(None, {"GH_TOKEN": TOKEN, "PATH": "/usr/bin"})
    assert secrets.found(f"pushed with {TOKEN}") == ["GH_TOKEN"]
    assert secrets.redact(f"pushed with {TOKEN}") == "pushed with [secret:GH_TOKEN]"
