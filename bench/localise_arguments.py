"""``codeagent bench localise``'s flags and handler (``bench/localise.py`` runs it).

Kept apart from the scenario so that parsing the command line imports neither the evals nor
tree-sitter. A dataset or repository folder that is not there is one ``codeagent: error:``
line; the markdown table goes to stderr, the JSON to stdout and ``--output``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codeagent import xdg
from codeagent.bench.handlers import BenchError, write_results


def add(sub: argparse._SubParsersAction) -> None:
    """Register ``bench localise`` under ``codeagent bench``."""
    parser = sub.add_parser(
        "localise", help="recall@k of the definitions each gold patch changes, ranked from the issue alone"
    )
    parser.add_argument("--dataset", type=Path, help="SWE-bench-format tasks (default: codeagent's own set)")
    parser.add_argument("--repos", type=Path, help="folder of the dataset's repositories, as for 'eval'")
    parser.add_argument(
        "--timing-repo", type=Path, metavar="PATH", help="also time the localiser on this (large) repository"
    )
    parser.add_argument("--output", type=Path, default=Path("bench-localise.json"), help="JSON results file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, config: object) -> int:
    from codeagent.bench.localise import bench_localise
    from codeagent.evals.task import TaskError

    for name in ("dataset", "repos", "timing_repo"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            raise BenchError(f"{path} does not exist")
    try:
        results = bench_localise(args.dataset, args.repos, xdg.folder("cache") / "repomap", args.timing_repo)
    except TaskError as err:
        raise BenchError(str(err)) from err
    print(results["markdown"], file=sys.stderr)
    return write_results(results, args.output)
