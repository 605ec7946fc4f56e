"""Definitions and references of one source file, from tree-sitter queries.

Grammars come from the per-language wheels (``tree_sitter_python`` and friends), which
ship compiled parsers and need no download. Parsers and queries are built once per
language and reused. A reference at the very spot of a definition (a type name that a
broad ``type_identifier`` pattern also catches) is dropped.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from tree_sitter import Language, Parser, Query, QueryCursor

# extension -> (language name, wheel module, attribute returning the language pointer)
LANGUAGES: dict[str, tuple[str, str, str]] = {
    ".py": ("python", "tree_sitter_python", "language"),
    ".pyi": ("python", "tree_sitter_python", "language"),
    ".js": ("javascript", "tree_sitter_javascript", "language"),
    ".jsx": ("javascript", "tree_sitter_javascript", "language"),
    ".mjs": ("javascript", "tree_sitter_javascript", "language"),
    ".cjs": ("javascript", "tree_sitter_javascript", "language"),
    ".ts": ("typescript", "tree_sitter_typescript", "language_typescript"),
    ".mts": ("typescript", "tree_sitter_typescript", "language_typescript"),
    ".tsx": ("tsx", "tree_sitter_typescript", "language_tsx"),
    ".go": ("go", "tree_sitter_go", "language"),
    ".rs": ("rust", "tree_sitter_rust", "language"),
    ".java": ("java", "tree_sitter_java", "language"),
}
QUERY_FILES = {"tsx": "typescript"}  # languages that share another's query file


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    kind: str  # "def" or "ref"
    line: int  # 1-based
    category: str  # function, class, call, type, ...
    text: str = ""  # the definition's source line, trimmed (defs only)


def language_of(path: str) -> str | None:
    dot = path.rfind(".")
    entry = LANGUAGES.get(path[dot:].lower()) if dot >= 0 else None
    return entry[0] if entry else None


def query_text(language: str) -> str:
    name = QUERY_FILES.get(language, language)
    return resources.files("codeagent.tools.repomap").joinpath("queries", f"{name}-tags.scm").read_text()


@cache
def _tooling(language: str) -> tuple[Parser, Query]:
    module_name, attribute = next((m, a) for lang, m, a in LANGUAGES.values() if lang == language)
    pointer = getattr(importlib.import_module(module_name), attribute)()
    grammar = Language(pointer)
    return Parser(grammar), Query(grammar, query_text(language))


def extract(source: bytes, language: str) -> list[Tag]:
    parser, query = _tooling(language)
    tree = parser.parse(source)
    lines = source.split(b"\n")
    defs: dict[tuple[int, int], Tag] = {}
    refs: dict[tuple[int, int], Tag] = {}
    for capture, nodes in QueryCursor(query).captures(tree.root_node).items():
        _, kind, category = ([*capture.split("."), "", ""])[:3]
        for node in nodes:
            row, column = node.start_point
            name = node.text.decode("utf-8", errors="replace") if node.text else ""
            if kind == "definition":
                text = lines[row].decode("utf-8", errors="replace").rstrip()[:160]
                defs[(row, column)] = Tag(name, "def", row + 1, category, text)
            elif kind == "reference":
                refs.setdefault((row, column), Tag(name, "ref", row + 1, category))
    kept_refs = [tag for spot, tag in refs.items() if spot not in defs]
    return sorted([*defs.values(), *kept_refs], key=lambda t: (t.line, t.kind, t.name))
