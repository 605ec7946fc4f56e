"""``python -m codeagent.bench SCENARIO ...``: ``codeagent bench SCENARIO ...`` without the CLI.

The ``codeagent`` command wires the agent side too (pydantic, textual, git...), which a GPU
machine with only torch, triton and transformers does not have; the benches need none of
it. This entry point builds the same ``bench`` parser (``bench.command``) alone and runs
the chosen scenario's handler; a ``BenchError`` is one ``error:`` line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from codeagent.bench import command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codeagent", description="codeagent's benchmarks alone")
    command.register(parser.add_subparsers(dest="command", required=True))
    argv = sys.argv[1:] if argv is None else argv
    sys.argv = ["codeagent", "bench", *argv]  # what the benches record as their command: its CLI spelling
    args = parser.parse_args(sys.argv[1:])
    try:
        return int(args.handler(args, None))
    except command.BenchError as err:
        print(f"codeagent: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
