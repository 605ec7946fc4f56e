"""What an issue quotes exactly: stack-trace frames, file names and identifiers.

- **Frames**: ``File "pkg/mod.py", line 12, in parse`` (Python), ``at parse (src/mod.js:12:5)``
  (JavaScript), ``pkg/mod.go:12`` (Go and most others): a path and a line, sometimes a name.
- **Files**: any word that ends in a source extension (``values.py``, ``src/router.ts``).
- **Identifiers**: words written as code: inside backticks or fenced blocks, called
  (``parse(``), dotted (``config.get_duration``: each part), or shaped like code
  (``snake_case``, ``camelCase``, ``CapWords`` with an inner capital). Plain English words
  are never identifiers here: the lexical ranking covers them.

Paths are matched to repository files by ``match_files`` (exact, or the unique files whose
path ends with the quoted one: traces carry absolute or site-packages paths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SOURCE_EXT = r"(?:py|pyi|js|jsx|mjs|cjs|ts|tsx|go|rs|java)"
PY_FRAME = re.compile(r'File "([^"]+)", line (\d+)(?:, in (\w+))?')
JS_FRAME = re.compile(
    r"at (?:([\w.$<>]+) )?\(?((?:[\w.@~-]*/)*[\w.@~-]+\." + SOURCE_EXT + r"):(\d+)(?::\d+)?\)?"
)
PLAIN_FRAME = re.compile(r"((?:[\w.@~-]*/)*[\w@~-][\w.@~-]*\." + SOURCE_EXT + r"):(\d+)")
FILE = re.compile(r"(?<![\w/.-])((?:[\w.@~-]*/)*[\w@~-][\w.@~-]*\." + SOURCE_EXT + r")\b")
MAX_FILE_MATCHES = 3  # a quoted name that ends more files than this says too little
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`", re.S)
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")
DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")
CODE_SHAPED = re.compile(r"\b(?:[a-z0-9]+_\w+|_\w+|[a-z]+[A-Z]\w*|[A-Z][a-z0-9]+[A-Z]\w*)\b")


@dataclass(slots=True)
class Cues:
    frames: list[tuple[str, int, str]] = field(default_factory=list)  # (path, line, name or "")
    files: list[str] = field(default_factory=list)
    idents: set[str] = field(default_factory=set)


def read_cues(text: str) -> Cues:
    cues = Cues()
    for path, line, name in PY_FRAME.findall(text):
        cues.frames.append((path, int(line), name))
    for name, path, line in JS_FRAME.findall(text):
        cues.frames.append((path, int(line), name.rsplit(".", 1)[-1]))
    seen = {(p, n) for p, n, _ in cues.frames}
    cues.frames += [(p, int(n), "") for p, n in PLAIN_FRAME.findall(text) if (p, int(n)) not in seen]
    cues.files = list(dict.fromkeys(FILE.findall(text)))
    cues.idents = _idents(text) | {name for *_, name in cues.frames if name}
    return cues


def _idents(text: str) -> set[str]:
    found: set[str] = set()
    for span in CODE_SPAN.findall(text):
        found.update(IDENT.findall(span))
    for called in CALLED.findall(text):
        found.update(called.split("."))
    for dotted in DOTTED.findall(text):
        if not re.fullmatch(r"[\w-]+\." + SOURCE_EXT, dotted):
            found.update(dotted.split("."))
    found.update(CODE_SHAPED.findall(text))
    return {word for word in found if len(word) > 1 and not word.isdigit()}


def match_files(quoted: str, by_path: dict[str, int]) -> list[str]:
    """Repository files a quoted path names: itself, else those its longest matching tail ends."""
    quoted = quoted.removeprefix("./")
    if quoted in by_path:
        return [quoted]
    parts = quoted.split("/")
    for start in range(len(parts)):  # the longest tail that names exactly one file
        tail = "/".join(parts[start:])
        hits = [path for path in by_path if path == tail or path.endswith("/" + tail)]
        if hits:
            return hits if len(hits) <= MAX_FILE_MATCHES else []
    return []
