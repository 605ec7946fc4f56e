"""How a ``fix`` run ends once the agent stops: its gates, the commit, the verdict, publishing.

``conclude`` refuses (``leaks.Refused``: nothing committed) when refs outside the task moved
(they are put back first), when the change touches a protected name, or when the diff or
the commit message carries a known secret; otherwise it commits what the agent changed (build
by-products and nested repositories left out), runs the tests again, judges the run
(resolved, unresolved, error, refused) and, when asked, pushes and opens a pull request after
checking its title and body.
"""

from __future__ import annotations

from typing import Any

from codeagent.agent import gitops, leaks
from codeagent.agent.fixtypes import FixOptions, FixResult
from codeagent.agent.github import GitHubError
from codeagent.agent.loop import RunResult
from codeagent.agent.record import FixRecord
from codeagent.sandbox.git import GitRepo
from codeagent.sandbox.secrets import KnownSecrets
from codeagent.tools.base import ToolEnv, run_tool
from codeagent.tools.registry import get_tool


def run_tests(env: ToolEnv) -> dict[str, Any]:
    observation = run_tool(get_tool("run_tests"), {}, env)
    data = observation.data
    if "exit_code" not in data:
        return {"detected": False, "message": observation.text}
    return {
        "detected": True,
        "command": data.get("command"),
        "exit_code": data["exit_code"],
        "passed": len(data.get("passed", [])),
        "failed": len(data.get("failed", [])),
        "errors": len(data.get("errors", [])),
        "failed_tests": list(data.get("failed", [])) + list(data.get("errors", [])),
    }


def conclude(
    result: FixResult,
    outcome: RunResult,
    record: FixRecord,
    env: ToolEnv,
    options: FixOptions,
    secrets: KnownSecrets,
    repo: GitRepo,
) -> None:
    """Commit, judge and publish; raises ``leaks.Refused`` (nothing committed) on a secret, on refs
    outside the task that moved, or on a change to a protected path."""
    root = env.root
    moved = _moved_refs(repo, record)
    if moved:
        raise leaks.Refused(
            f"refs outside the task moved during the run ({', '.join(moved)}); they were put back"
        )
    changed = gitops.changed_paths(repo, set(record.untracked_before))
    refusal = gitops.commit_refusal(changed)
    if refusal:
        raise leaks.Refused(refusal)
    result.tests_after = run_tests(env) if changed else record.tests_before
    if changed:
        message = _commit_message(record, outcome)
        leaks.check_commit(secrets, root, changed, message)
        result.commit = gitops.commit(repo, changed, message)
        result.files_changed = gitops.files_between(repo, record.base_commit, result.commit)
    _judge(result, outcome, bool(changed))
    if result.status == "resolved" and (options.push or options.pr):
        _publish(result, record, options, secrets, repo)


def conclude_fix(
    result: FixResult,
    outcome: RunResult,
    record: FixRecord,
    env: ToolEnv,
    options: FixOptions,
    secrets: KnownSecrets,
    repo: GitRepo,
) -> bool:
    """``conclude``, then the user's stash back on their branch; a gate's refusal becomes the
    result's (status ``refused``, nothing committed, the stash left a stash): False then."""
    try:
        conclude(result, outcome, record, env, options, secrets, repo)
    except leaks.Refused as refused:
        kept = f"; your own changes stay in stash {record.stash}" if record.stash else ""
        result.status, result.message = "refused", f"{refused}{kept}"
        return False
    if record.stash:
        gitops.checkout(repo, record.original_branch or record.base_commit)
        gitops.restore_stash(repo, record.stash)
    return True


def _judge(result: FixResult, outcome: RunResult, changed: bool) -> None:
    """The verdict: the agent's own error or refusal, else resolved (finished, something changed,
    the tests pass or none exist), else unresolved with the reason."""
    tests_ok = not result.tests_after.get("detected") or result.tests_after.get("exit_code") == 0
    if outcome.status in ("error", "refused"):
        result.status, result.message = outcome.status, outcome.message
    elif outcome.status == "finished" and changed and tests_ok:
        result.status, result.message = (
            "resolved",
            "fixed; tests pass" if result.tests_after.get("detected") else "fixed; no test suite found",
        )
    else:
        result.status, result.message = "unresolved", _why_unresolved(outcome, changed, tests_ok)


def _moved_refs(repo: GitRepo, record: FixRecord) -> list[str]:
    """Refs that changed since the task branch was made (codeagent's stash aside), put back.
    Until the run commits, every ref, the task branch included, must be where it was.

    With the sandbox on, ``.git`` is read-only to commands and this finds nothing; an unconfined
    run (``--sandbox off``) can move any ref, and a run must not leave that behind."""
    before = record.refs_before
    if before is None:
        return []  # a run started before refs were recorded
    moved = gitops.moved_refs(before, gitops.refs(repo), {"refs/stash"})
    gitops.put_back_refs(repo, before, moved)
    on = gitops.current_branch(repo)
    if on != record.branch:
        moved.append(f"HEAD (now on {on or 'a detached commit'})")
    return moved


def _why_unresolved(outcome: RunResult, changed: bool, tests_ok: bool) -> str:
    if outcome.status != "finished":
        return f"the agent stopped: {outcome.message}"
    if not changed:
        return "the agent finished without changing any file"
    return "the tests fail after the change" if not tests_ok else "unresolved"


def _commit_message(record: FixRecord, outcome: RunResult) -> str:
    issue = record.issue
    title = issue.title or "task"
    head = f"Fix #{issue.number}: {title}" if issue.number else f"codeagent: {title}"
    body = outcome.summary or f"Unfinished attempt ({outcome.status}: {outcome.message})."
    return f"{head[:72]}\n\n{body}\n\nMade by codeagent, run {record.run_id}."


def _publish(
    result: FixResult, record: FixRecord, options: FixOptions, secrets: KnownSecrets, repo: GitRepo
) -> None:
    issue = record.issue
    title = f"Fix #{issue.number}: {issue.title}" if issue.number else issue.title
    body = (result.summary or "") + (f"\n\nCloses #{issue.number}." if issue.number else "")
    refusal = leaks.check_pull_request(secrets, title, body) if options.pr else None
    if refusal:
        result.status, result.message = "refused", f"{refusal}; the commit stays local"
        return
    try:
        gitops.push(repo, record.branch, token=options.push_token)
        if options.pr and options.pull_requests is not None:
            result.pull_request = options.pull_requests.create_pull_request(
                record.branch, record.original_branch or "main", title, body
            )
    except (gitops.GitError, GitHubError, OSError) as err:
        result.status, result.message = "error", f"fixed and committed, but publishing failed: {err}"
