"""``codeagent bench localise``: where the definitions a fix changes rank, given only the issue.

For every task (codeagent's own set, or ``--dataset FILE`` with ``--repos DIR`` as for
``codeagent eval``) a workspace at the base commit is made as the evals make it, the gold
patch's definitions are found there (``localise_gold.targets``), and each ranker orders the
repository's definitions from the issue text alone:

- ``bm25``: Okapi BM25 over each definition's source, the issue's words as the query;
- ``repomap``: the repo map's ranking personalised by the issue's words as ``repo_map(focus=...)``
  reads them (file names and identifiers);
- ``localise``: ``tools.repomap.localise`` (lexical BM25F + quoted cues + call graph).

``recall@k`` counts the tasks with at least one changed definition in a ranker's first k
(``all@k``: every one of them); tasks without targets or whose repository is missing are
listed, not counted. The JSON keeps each task's first gold rank per ranker and the recall
per project, so one project cannot carry the table unseen. With ``--timing-repo PATH``, the
localiser is also timed on that repository: the first ranking (index built: tags from the
repo map's cache or parsed, every file tokenised) and then one ranking per task's issue with
the index in memory, whole (list, read, hash, rank) and the ranking alone.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from codeagent.bench.localise_gold import Spot, bm25_ranking, targets
from codeagent.evals.loader import BUILTIN, load_tasks
from codeagent.evals.repos import SourceMissing, WorkspaceError, locate, materialize
from codeagent.evals.task import Task
from codeagent.tools.ignore import iter_files
from codeagent.tools.repomap.localise import corpus_of, rank
from codeagent.tools.repomap.rank import rank_definitions
from codeagent.tools.repomap.repomap import RepoMap
from codeagent.tools.repomap.tool import split_focus

KS = (1, 3, 5, 10)
RANKERS = ("bm25", "repomap", "localise")


def rankings(root: Path, issue: str, cache_dir: Path) -> dict[str, list[Spot]]:
    files = iter_files(root)
    with RepoMap(root, cache_dir) as repo_map:
        tags = repo_map.file_tags(files)
    named, idents = split_focus(issue, files)
    mapped = rank_definitions(tags, named, idents)
    ranked = rank(corpus_of(root, files, cache_dir), issue)
    return {
        "bm25": bm25_ranking(root, tags, issue),
        "repomap": [(t.rel_path, t.line) for t in mapped],
        "localise": [(r.definition.rel_path, r.definition.line) for r in ranked],
    }


def first_rank(ranking: list[Spot], gold: set[Spot]) -> int | None:
    """1-based rank of the first gold definition, None when it is not ranked at all."""
    return next((i for i, spot in enumerate(ranking, 1) if spot in gold), None)


def task_result(task: Task, repos: Path | None, cache_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"instance_id": task.instance_id, "project": task.repo or task.instance_id}
    try:
        source = locate(task, repos)
        with tempfile.TemporaryDirectory(prefix="codeagent-localise-") as scratch:
            root = Path(scratch) / "repo"
            materialize(task, source, root)
            gold = targets(root, task.patch)
            ranked = rankings(root, task.problem_statement, cache_dir) if gold else {}
    except (SourceMissing, WorkspaceError) as err:
        return {**result, "skipped": str(err)}
    if not gold:
        return {**result, "skipped": "the patch changes no definition"}
    result["targets"] = sorted(f"{rel}:{line}" for rel, line in gold)
    result["first_rank"] = {name: first_rank(order, gold) for name, order in ranked.items()}
    result["all_within"] = {
        name: max((order.index(s) + 1 if s in order else 10**9) for s in gold)
        for name, order in ranked.items()
    }
    return result


def recall(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counted = [r for r in results if "first_rank" in r]
    table: dict[str, dict[str, int]] = {}
    for name in RANKERS:
        row = {f"@{k}": sum(1 for r in counted if (r["first_rank"][name] or 10**9) <= k) for k in KS}
        row |= {f"all@{k}": sum(1 for r in counted if r["all_within"][name] <= k) for k in KS}
        table[name] = row
    return table


def markdown(table: dict[str, dict[str, int]], tasks: int) -> str:
    lines = ["| ranker | " + " | ".join(f"recall@{k}" for k in KS) + " | all@5 |", "|---|" + "---:|" * 5]
    for name, row in table.items():
        cells = [f"{row[f'@{k}']}/{tasks}" for k in KS] + [f"{row['all@5']}/{tasks}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_localise(
    dataset: Path | None, repos: Path | None, cache_dir: Path, timing_repo: Path | None = None
) -> dict[str, Any]:
    tasks = load_tasks(dataset or BUILTIN)
    results = [task_result(task, repos, cache_dir) for task in tasks]
    counted = [r for r in results if "first_rank" in r]
    projects = sorted({r["project"] for r in counted})
    out: dict[str, Any] = {
        "scenario": "localise",
        "dataset": str(dataset or "evals/tasks"),
        "tasks": len(tasks),
        "counted": len(counted),
        "recall": recall(results),
        "by_project": {p: recall([r for r in counted if r["project"] == p]) for p in projects},
        "skipped": {r["instance_id"]: r["skipped"] for r in results if "skipped" in r},
        "results": counted,
    }
    out["markdown"] = markdown(out["recall"], len(counted))
    if timing_repo is not None:
        out["timing"] = time_ranking(timing_repo, [t.problem_statement for t in tasks], cache_dir)
    return out


def time_ranking(root: Path, issues: list[str], cache_dir: Path) -> dict[str, Any]:
    root = root.resolve()
    started = time.perf_counter()
    files = iter_files(root)
    rank(corpus_of(root, files, cache_dir), issues[0])
    first = time.perf_counter() - started
    whole, alone = [], []
    for issue in issues:
        started = time.perf_counter()
        corpus = corpus_of(root, iter_files(root), cache_dir)
        middle = time.perf_counter()
        rank(corpus, issue)
        done = time.perf_counter()
        whole.append(done - started)
        alone.append(done - middle)
    lines = sum((root / rel).read_bytes().count(b"\n") for rel in corpus.by_path)
    return {
        "repository": str(root),
        "source_files": len(corpus.files),
        "source_lines": lines,
        "definitions": corpus.defs,
        "first_ranking_s": round(first, 3),
        "cached_ranking_median_s": round(statistics.median(whole), 3),
        "cached_ranking_max_s": round(max(whole), 3),
        "rank_only_median_s": round(statistics.median(alone), 4),
        "rankings": len(issues),
    }
