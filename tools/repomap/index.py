"""Definitions as documents: each one's terms, kept per file and reused while its content holds.

Every line of a file belongs to the innermost definition around it (a method's lines to the
method, the lines of its class outside any method to the class), so a definition's *body*
is its own lines: the header, docstring, comments and code, without its nested definitions.
Each definition has three fields for BM25F (``localise.py``): its name's terms, its body's
terms and its file's path terms (shared by the file's definitions). The references inside a
definition's own lines (from the tags) give the call graph: which names it uses.

A ``FileIndex`` holds postings per term (definition, count in name, count in body), so a
query costs a dictionary look-up per file and query term, never a pass over every body.
Indexes are kept in process memory by the tag cache's content key (``MEMO_FILES`` at most),
so a second ranking of an unchanged repository reads and hashes its files but tokenises
nothing; ``Corpus`` (the cross-file tables) is kept for the latest set of keys. Not done:
an on-disk store of the terms (a new process tokenises every file once, as a cold map parses).
Module-level lines outside every definition are not indexed: they have no definition to rank.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from codeagent.tools.repomap.tags import Tag
from codeagent.tools.repomap.words import path_terms, terms

MEMO_FILES = 50_000
TEST_PATH = re.compile(
    r"(^|/)(tests?|testing|__tests__|spec)/|(^|/)test_[^/]*$|_test\.\w+$|\.(test|spec)\.\w+$"
)

Posting = tuple[int, int, int]  # (definition index in its file, count in name, count in body)


@dataclass(frozen=True, slots=True)
class Definition:
    rel_path: str
    name: str
    category: str
    line: int  # the line with its name
    end: int
    text: str  # that line, trimmed by the tags


@dataclass(slots=True)
class FileIndex:
    rel_path: str
    defs: list[Definition]
    name_len: list[int]
    body_len: list[int]
    postings: dict[str, list[Posting]]
    path: Counter[str]
    uses: list[frozenset[str]]  # names referenced in each definition's own lines
    test: bool


def owners(defs: list[Definition], line_count: int) -> list[int]:
    """For each line (0-based), the index of the innermost definition around it, or -1."""
    owner = [-1] * line_count
    order = sorted(range(len(defs)), key=lambda i: (defs[i].line, -defs[i].end))
    for i in order:  # by start: a nested definition comes later and overwrites its lines
        start, end = defs[i].line - 1, min(max(defs[i].end, defs[i].line), line_count)
        owner[start:end] = [i] * (end - start)
    return owner


def index_file(rel_path: str, source: bytes, tags: list[Tag]) -> FileIndex:
    defs = [
        Definition(t.rel_path or rel_path, t.name, t.category, t.line, t.end, t.text)
        for t in tags
        if t.kind == "def"
    ]
    lines = source.decode("utf-8", "replace").split("\n")
    owner = owners(defs, len(lines))
    own_lines: list[list[str]] = [[] for _ in defs]
    for number, text in enumerate(lines):
        if owner[number] >= 0:
            own_lines[owner[number]].append(text)
    uses: list[set[str]] = [set() for _ in defs]
    for tag in tags:
        if tag.kind == "ref" and 0 < tag.line <= len(owner) and owner[tag.line - 1] >= 0:
            uses[owner[tag.line - 1]].add(tag.name)
    postings: dict[str, list[Posting]] = {}
    name_len, body_len = [], []
    for i, definition in enumerate(defs):
        name_terms = Counter(terms(definition.name))
        body_terms = Counter(terms("\n".join(own_lines[i])))
        name_len.append(sum(name_terms.values()))
        body_len.append(sum(body_terms.values()))
        for term in name_terms.keys() | body_terms.keys():
            postings.setdefault(term, []).append((i, name_terms[term], body_terms[term]))
    return FileIndex(
        rel_path,
        defs,
        name_len,
        body_len,
        postings,
        Counter(path_terms(rel_path)),
        [frozenset(u) for u in uses],
        bool(TEST_PATH.search(rel_path)),
    )


@dataclass(slots=True)
class Corpus:
    """Every file's index plus the cross-file tables a ranking needs."""

    files: list[FileIndex]
    defs: int = 0
    avg_name: float = 1.0
    avg_body: float = 1.0
    definers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # name -> (file, def)
    users: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # name -> defs using it
    by_path: dict[str, int] = field(default_factory=dict)
    df: Counter[str] = field(default_factory=Counter)  # definitions with the term in any field
    term_files: dict[str, list[int]] = field(default_factory=dict)  # files with the term anywhere

    @classmethod
    def of(cls, files: list[FileIndex]) -> Corpus:
        corpus = cls(files)
        names = bodies = 0
        for f, index in enumerate(files):
            corpus.by_path[index.rel_path] = f
            corpus.defs += len(index.defs)
            names += sum(index.name_len)
            bodies += sum(index.body_len)
            corpus._count_terms(f, index)
            for d, definition in enumerate(index.defs):
                corpus.definers.setdefault(definition.name, []).append((f, d))
                for name in index.uses[d]:
                    corpus.users.setdefault(name, []).append((f, d))
        corpus.avg_name = max(names / max(corpus.defs, 1), 1.0)
        corpus.avg_body = max(bodies / max(corpus.defs, 1), 1.0)
        return corpus

    def _count_terms(self, f: int, index: FileIndex) -> None:
        for term, postings in index.postings.items():
            if term not in index.path:
                self.df[term] += len(postings)
                self.term_files.setdefault(term, []).append(f)
        for term in index.path:
            self.df[term] += len(index.defs)
            self.term_files.setdefault(term, []).append(f)


class IndexMemo:
    """File indexes by content key, and the corpus of the latest key set, in process memory."""

    def __init__(self) -> None:
        self.files: dict[str, FileIndex] = {}
        self.corpus_key: tuple[tuple[str, str], ...] = ()
        self.corpus: Corpus | None = None

    def corpus_for(self, keyed: dict[str, str], fresh: dict[str, FileIndex]) -> Corpus:
        """The corpus of ``keyed`` ({rel_path: content key}); ``fresh`` adds indexes just built."""
        if len(self.files) + len(fresh) > MEMO_FILES:
            self.files.clear()
        for rel, index in fresh.items():
            self.files[keyed[rel]] = index
        key = tuple(sorted(keyed.items()))
        if self.corpus is None or key != self.corpus_key:
            self.corpus = Corpus.of([self.files[keyed[rel]] for rel in sorted(keyed)])
            self.corpus_key = key
        return self.corpus

    def missing(self, keyed: dict[str, str]) -> list[str]:
        return [rel for rel, key in keyed.items() if key not in self.files or self.files[key].rel_path != rel]


MEMO = IndexMemo()
