"""Definitions and references of one source file, from tree-sitter queries.

Grammars come from the per-language wheels (``tree_sitter_python`` and friends), which
ship compiled parsers and need no download. Each language's compiled query is built once per
process and its parser once per thread (parsers are not safe to share between threads),
then reused for every file. Queries live in ``queries/*-tags.scm``
and name their captures ``name.definition.<category>`` or ``name.reference.<category>``.

A definition's ``end`` is the last line of the name's parent node (the function, class,
method or declaration it names), so a line can be mapped to the definitions around it.
A reference at the very spot of a definition (a type name that a broad ``type_identifier``
pattern also catches) is dropped; two definition captures at one spot keep one tag.
Limits: names only, no scopes or imports resolved; a file that does not parse cleanly
still yields the tags tree-sitter recovered.
"""

from __future__ import annotations

import importlib
import threading
from functools import cache
from importlib import resources
from operator import attrgetter
from typing import NamedTuple

from tree_sitter import Language, Parser, Query, QueryCursor

# language -> (grammar wheel's module, attribute returning the language pointer)
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
}
EXTENSIONS: dict[str, str] = {
    **dict.fromkeys((".py", ".pyi"), "python"),
    **dict.fromkeys((".js", ".jsx", ".mjs", ".cjs"), "javascript"),
    **dict.fromkeys((".ts", ".mts", ".cts"), "typescript"),
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
}
QUERY_FILES = {"tsx": ("typescript", "tsx")}  # query files joined for a language; default: its own
MAX_LINE_CHARS = 160  # a definition line longer than this is cut: the map shows shapes, not bodies


class Tag(NamedTuple):
    """One definition or reference; a tuple so that thousands of them stay cheap to build."""

    rel_path: str
    name: str
    kind: str  # "def" or "ref"
    line: int  # 1-based
    category: str  # function, class, method, call, type, ...
    text: str = ""  # the definition's source line, right-trimmed (defs only)
    end: int = 0  # last line of the definition's node (defs only; 0 for references)


def language_of(path: str) -> str | None:
    """The language of a file by its extension, or None when no grammar covers it."""
    dot = path.rfind(".")
    return EXTENSIONS.get(path[dot:].lower()) if dot > path.rfind("/") else None


def languages() -> list[str]:
    return sorted(GRAMMARS)


def query_text(language: str) -> str:
    folder = resources.files("codeagent.tools.repomap").joinpath("queries")
    names = QUERY_FILES.get(language, (language,))
    return "\n".join(folder.joinpath(f"{name}-tags.scm").read_text() for name in names)


@cache
def _grammar(language: str) -> tuple[Language, Query]:
    module_name, attribute = GRAMMARS[language]
    grammar = Language(getattr(importlib.import_module(module_name), attribute)())
    return grammar, Query(grammar, query_text(language))


_PARSERS = threading.local()


def _parser(language: str) -> Parser:
    parsers: dict[str, Parser] = _PARSERS.__dict__.setdefault("by_language", {})
    if language not in parsers:
        parsers[language] = Parser(_grammar(language)[0])
    return parsers[language]


_ORDER = attrgetter("line", "kind", "name")


def extract(source: bytes, language: str, rel_path: str = "") -> list[Tag]:
    """Tags of one file's content, sorted by line, definitions before references on a line."""
    tree = _parser(language).parse(source)
    captures = QueryCursor(_grammar(language)[1]).captures(tree.root_node)
    lines = source.split(b"\n")
    defs: dict[tuple[int, int], Tag] = {}
    refs: dict[tuple[int, int], Tag] = {}
    for capture in sorted(captures):  # sorted: which of two captures at one spot wins is stable
        _, kind, category = [*capture.split("."), "", ""][:3]
        for node in captures[capture]:
            row, column = node.start_point
            name = source[node.start_byte : node.end_byte].decode("utf-8", "replace")
            if kind == "definition":
                text = lines[row].decode("utf-8", "replace")[:MAX_LINE_CHARS].rstrip()
                end = (node.parent or node).end_point[0] + 1  # the name's parent: the definition
                defs[(row, column)] = Tag(rel_path, name, "def", row + 1, category, text, end)
            elif kind == "reference":
                refs.setdefault((row, column), Tag(rel_path, name, "ref", row + 1, category))
    tags = [*defs.values(), *(tag for spot, tag in refs.items() if spot not in defs)]
    tags.sort(key=_ORDER)
    return tags
