"""Leave no empty branch behind: when ``fix`` fails, the user is back where they started.

``BranchMade`` is what ``fix`` did to the repository before the run (the branch it created,
the commit it started from, the branch the user was on, the user's stash). ``undo_if_empty``
puts the user back on their branch (or their detached commit), with their stash restored,
and deletes the branch ``fix`` created, when that branch holds nothing of the run's: no
commit of its own and no change in the work tree. Otherwise it changes nothing and says so,
so ``--resume`` can continue from what is there.

Limits: it never deletes a branch with commits of its own, nor any branch but the one this
run created (the name recorded when it was made; a branch that has since moved away from
the base, by whatever means, counts as having commits). A branch left because its work tree
holds changes (an interrupted run, say) is the user's to keep or drop.
"""

from __future__ import annotations

from dataclasses import dataclass

from codeagent.agent import gitops
from codeagent.sandbox.git import GitError, GitRepo


@dataclass(frozen=True, slots=True)
class BranchMade:
    branch: str  # created by this run, from ``base``
    base: str  # commit id
    original: str | None  # the user's branch; None when HEAD was detached at ``base``
    stash: str | None  # the user's own changes, stashed by this run
    untracked_before: frozenset[str] = frozenset()

    def tip(self, repo: GitRepo) -> str | None:
        found = repo.run(["rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}"], check=False)
        return found.strip() or None

    def has_changes(self, repo: GitRepo) -> bool:
        return bool(gitops.changed_paths(repo, set(self.untracked_before)))

    def undo_if_empty(self, repo: GitRepo) -> bool:
        """Back to the user's branch and the created branch deleted, when the run left nothing on
        it; True when it did so, False when the branch is kept (commits or changes on it) or gone."""
        try:
            on_it = gitops.current_branch(repo) == self.branch
            if self.tip(repo) != self.base or (on_it and self.has_changes(repo)):
                return False
            if on_it:
                gitops.checkout(repo, self.original or self.base)
                if self.stash and self.stash in repo.run(["stash", "list", "--format=%H"]).split():
                    gitops.restore_stash(repo, self.stash)
            repo.run(["branch", "-D", "--", self.branch])
        except GitError:
            return False  # git itself refused (a lock, a conflict): leave things for the user to see
        return True
