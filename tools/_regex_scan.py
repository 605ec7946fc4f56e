"""Python-regex line scan in a process of its own: ``python -I -S _regex_scan.py``.

``search`` runs Python's ``re`` here, never in codeagent's process, because ``re`` is a
backtracking engine: a pattern such as ``(a+)+$`` takes exponential time on a near-miss
line, and a C-level match cannot be interrupted from Python. A separate process can be
killed at a deadline (``search.python_search`` does), leaving codeagent responsive.

Protocol: one JSON object on stdin, ``{"pattern": str, "root": str, "files": [rel, ...]}``;
one JSON line on stdout per file with a match, ``{"file": rel, "lines": [index, ...]}`` (0-based
line indices, lines split at ``\\n`` only, a CR kept, as ``search`` shows them), written as
each file finishes so the worker never holds every match. A pattern that does not compile
exits with status 2 and the reason on stderr; a file that cannot be read is skipped.

It imports the standard library only and runs with ``-I -S`` (no site-packages, no
``PYTHON*`` variables): it starts fast and nothing in the environment steers it. Its
address space is capped at ``MEMORY_BYTES``, so a pattern that makes ``re`` allocate without
end fails here (status 3) instead of pressing on the machine's memory.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys

MEMORY_BYTES = 2 << 30


def lines_matching(regex: re.Pattern[str], text: str) -> list[int]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start another
    return [index for index, line in enumerate(lines) if regex.search(line)]


def main() -> int:
    request = json.load(sys.stdin)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    try:
        regex = re.compile(request["pattern"])
    except (re.error, RecursionError, OverflowError) as err:
        print(err, file=sys.stderr)
        return 2
    try:
        for rel in request["files"]:
            try:
                with open(os.path.join(request["root"], rel), "rb") as handle:
                    text = handle.read().decode("utf-8", errors="replace")
            except OSError:
                continue
            found = lines_matching(regex, text)
            if found:
                print(json.dumps({"file": rel, "lines": found}))
    except MemoryError:
        print("the pattern needed more memory than the search allows", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
