"""Localisation: the repository's definitions ranked by how likely a fix to ``query`` changes them.

Three signals, added up per definition (``index.py`` makes each definition a document):

1. **Lexical** (BM25F): the query's terms (``words.py``: identifiers split, stemmed, numbers
   and operators kept) against each definition's name, body and path, each field
   length-normalised on its own and weighted (a term in the name counts ``W_NAME`` times one
   in the body) before one saturation, so a term repeated across fields is not counted
   twice over. Query terms that repeat weigh ``1 + ln(count)``.
2. **Exact cues** (``cues.py``), scaled by the best lexical score so they lead without making
   the lexical order meaningless: a stack-trace frame's line inside the definition
   (``FRAME_BONUS``), a quoted identifier equal to its name (``IDENT_BONUS``, shared among
   equally named definitions), a quoted file name that is its file (``FILE_BONUS``).
3. **Graph**: the ``STRONG`` best definitions after 1-2 pass ``NEIGHBOUR`` of their score to
   the definitions they call (names used in their own lines) and ``CALLER`` of it to the
   definitions that call them; a name with more than ``COMMON`` definitions passes nothing
   (equal names are not the same symbol). A symptom reported on a public entry point thus
   also lifts the helper it calls, which is often where the fix goes.

Then definitions in test files are scaled by ``TEST_FACTOR`` (a fix changes the code under
test), and those in ``focus_files`` (what the agent has opened or edited) by ``FOCUS_FACTOR``.
The constants are round values on a coarse grid, chosen on codeagent's own tasks
(``codeagent bench localise``) leaving one project out at a time: the setting here is the
one most folds picked from the other projects' tasks, so no project's tasks chose their own.
Quoted identifiers get only a nudge: issues quote the entry point that shows the symptom more
often than the helper at fault, which the graph reaches from it.
Limits: no semantics (a symptom with no word in common with the code finds it only through
the graph), names resolved by equality only, and module-level code is not a definition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from codeagent.tools.repomap.cues import match_files, read_cues
from codeagent.tools.repomap.index import MEMO, Corpus, Definition, index_file
from codeagent.tools.repomap.repomap import RepoMap
from codeagent.tools.repomap.words import term_counts

K1 = 1.2
W_NAME, W_BODY, W_PATH = 1.5, 1.0, 1.0
B_NAME, B_BODY = 0.3, 0.5
FRAME_BONUS, IDENT_BONUS, FILE_BONUS = 2.0, 0.25, 0.3
STRONG, NEIGHBOUR, CALLER, COMMON = 10, 0.3, 0.15, 5
TEST_FACTOR, FOCUS_FACTOR = 0.3, 1.25

Key = tuple[int, int]  # (file index, definition index) in a corpus


@dataclass(frozen=True, slots=True)
class Ranked:
    definition: Definition
    score: float


def rank(corpus: Corpus, query: str, focus_files: Collection[str] = ()) -> list[Ranked]:
    """The definitions with any evidence, best first; ties by path and line."""
    scores = _lexical(corpus, query)
    _add_cues(corpus, query, scores)
    _add_graph(corpus, scores)
    focus = set(focus_files)
    ranked = []
    for (f, d), score in scores.items():
        index = corpus.files[f]
        score *= TEST_FACTOR if index.test else 1.0
        score *= FOCUS_FACTOR if index.rel_path in focus else 1.0
        ranked.append(Ranked(index.defs[d], score))
    ranked.sort(key=lambda r: (-r.score, r.definition.rel_path, r.definition.line))
    return ranked


def _saturate(tf: float) -> float:
    return tf * (K1 + 1) / (tf + K1)


def _lexical(corpus: Corpus, query: str) -> dict[Key, float]:
    scores: dict[Key, float] = {}
    for term, count in term_counts(query).items():
        df = corpus.df.get(term, 0)
        if not df:
            continue
        weight = (1 + math.log(count)) * math.log(1 + (corpus.defs - df + 0.5) / (df + 0.5))
        for f in corpus.term_files[term]:
            index = corpus.files[f]
            path_tf = W_PATH * index.path.get(term, 0)
            if path_tf:
                base = weight * _saturate(path_tf)
                for d in range(len(index.defs)):
                    scores[(f, d)] = scores.get((f, d), 0.0) + base
            for d, in_name, in_body in index.postings.get(term, ()):
                tf = path_tf
                tf += W_NAME * in_name / (1 - B_NAME + B_NAME * index.name_len[d] / corpus.avg_name)
                tf += W_BODY * in_body / (1 - B_BODY + B_BODY * index.body_len[d] / corpus.avg_body)
                gain = weight * (_saturate(tf) - (_saturate(path_tf) if path_tf else 0.0))
                scores[(f, d)] = scores.get((f, d), 0.0) + gain
    return scores


def _add_cues(corpus: Corpus, query: str, scores: dict[Key, float]) -> None:
    cues = read_cues(query)
    top = max(scores.values(), default=1.0)
    for path, line, _ in cues.frames:
        for rel in match_files(path, corpus.by_path):
            f = corpus.by_path[rel]
            for d in _around(corpus, f, line)[-1:]:
                scores[(f, d)] = scores.get((f, d), 0.0) + FRAME_BONUS * top
    for name in cues.idents:
        spots = corpus.definers.get(name, [])
        for spot in spots:
            scores[spot] = scores.get(spot, 0.0) + IDENT_BONUS * top / len(spots)
    for quoted in cues.files:
        for rel in match_files(quoted, corpus.by_path):
            f = corpus.by_path[rel]
            for d in range(len(corpus.files[f].defs)):
                scores[(f, d)] = scores.get((f, d), 0.0) + FILE_BONUS * top


def _around(corpus: Corpus, f: int, line: int) -> list[int]:
    """Definitions of file ``f`` whose lines include ``line``, outermost first."""
    defs = corpus.files[f].defs
    return sorted((d for d, x in enumerate(defs) if x.line <= line <= x.end), key=lambda d: defs[d].line)


def _add_graph(corpus: Corpus, scores: dict[Key, float]) -> None:
    strong = sorted(scores.items(), key=lambda item: -item[1])[:STRONG]
    lift: dict[Key, float] = {}
    for (f, d), score in strong:
        for name in corpus.files[f].uses[d]:
            spots = corpus.definers.get(name, [])
            for spot in spots if len(spots) <= COMMON else ():
                lift[spot] = max(lift.get(spot, 0.0), NEIGHBOUR * score)
        name = corpus.files[f].defs[d].name
        if len(corpus.definers.get(name, [])) <= COMMON:
            for spot in corpus.users.get(name, []):
                lift[spot] = max(lift.get(spot, 0.0), CALLER * score)
    for spot, gain in lift.items():
        scores[spot] = scores.get(spot, 0.0) + gain


def corpus_of(
    root: Path, files: list[str], cache_dir: Path, check: Callable[[], None] | None = None
) -> Corpus:
    """The corpus of ``files``, indexing only the files whose content the memo lacks."""
    with RepoMap(root, cache_dir) as repo_map:
        sources = repo_map.sources(files)
        keyed = {rel: repo_map.cache.key(language, source) for rel, (language, source) in sources.items()}
        missing = {rel: sources[rel] for rel in MEMO.missing(keyed)}
        tags = repo_map.tags_of(missing, check) if missing else {}
    fresh = {rel: index_file(rel, missing[rel][1], tags[rel]) for rel in missing}
    return MEMO.corpus_for(keyed, fresh)


def render_ranked(ranked: list[Ranked]) -> str:
    """One line per definition: ``path:first-last  its header line``."""
    rows = []
    for item in ranked:
        d = item.definition
        rows.append(f"{d.rel_path}:{d.line}-{max(d.end, d.line)}  {d.text.strip()}")
    return "\n".join(rows)
