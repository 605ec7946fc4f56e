"""Code-aware words: how issue text and source code are cut into terms for lexical ranking.

An identifier gives its whole lower-cased self (``get_duration``, ``parsehtml``) and its
parts: ``snake_case``, ``camelCase``, ``HTTPServer`` and letter/digit boundaries are split
(``utf8Decode`` -> ``utf``, ``8``, ``decode``), each part lower-cased and lightly stemmed so
that an issue's "rounding" meets the code's ``round`` and "parsed" meets ``parse``. Numbers
are terms (``3600``, ``1.5``), and so are runs of operator characters (``--``, ``<=``, ``%``):
issues quote the values and signs that go wrong. English function words and the keywords
every language shares are dropped; one-letter parts are too.

The stemmer is deliberately small (a few suffixes, never below three letters), not Porter's:
its only job is to make the two sides agree, and it is applied to both. Limits: no synonyms
("remove" does not meet ``delete``), no non-Latin scripts beyond what ``\\w`` splits.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|[-+*/%<>=!&|^~]+")
# the boundaries inside an identifier: lower->Upper, UPPER->Upper-lower, letter<->digit
PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
SUFFIXES = ("ings", "ing", "edly", "ed", "ies", "es", "s", "e", "ly")
STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does",
    "doing", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its",
    "it's", "me", "my", "no", "not", "of", "on", "or", "our", "so", "such", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "to", "too", "was", "we",
    "were", "what", "when", "where", "which", "while", "who", "why", "will", "with", "would", "you",
    "your", "also", "just", "only", "very", "get", "gets", "got", "should", "shall", "may", "might",
    "must", "any", "all", "each", "some", "same", "def", "function", "func", "fn", "return", "returns",
    "class", "self", "cls", "let", "var", "const", "new", "null", "none", "nil", "true", "false",
    "import", "from", "package", "public", "private", "static", "void", "int", "str", "bool", "else",
    "elif", "try", "except", "catch", "finally", "raise", "throw", "lambda", "pass", "yield", "async",
    "await"
))  # fmt: skip


@lru_cache(maxsize=65536)
def stem(part: str) -> str:
    """``part`` (lower case) with one common English suffix removed, keeping three letters."""
    if part.isdigit() or len(part) <= 4:
        return part
    for suffix in SUFFIXES:
        if part.endswith(suffix) and len(part) - len(suffix) >= 3:
            root = part[: -len(suffix)]
            if suffix == "s" and root.endswith(("s", "u", "i")):  # class, status, analysis
                return part
            return root + "y" if suffix == "ies" else root
    return part


@lru_cache(maxsize=262144)
def token_terms(token: str) -> tuple[str, ...]:
    """The terms of one token from ``TOKEN``: an identifier's whole form and its stemmed parts."""
    if not (token[0].isalpha() or token[0] == "_"):
        return (token,)
    whole = token.lower().strip("_")
    parts = [p.lower() for p in PART.findall(token)]
    terms = [stem(p) for p in parts if len(p) > 1 and p not in STOP]
    if whole and whole not in STOP and (len(parts) > 1 or not terms):
        terms.append(whole)
    return tuple(terms)


def terms(text: str) -> list[str]:
    """Every term of ``text`` in order, repeats kept."""
    return [term for token in TOKEN.findall(text) for term in token_terms(token)]


def term_counts(text: str) -> Counter[str]:
    return Counter(terms(text))


def path_terms(rel_path: str) -> list[str]:
    """Terms of a path's folders and file name, the extension left out."""
    stem_path = rel_path.rsplit(".", 1)[0] if "." in rel_path.rsplit("/", 1)[-1] else rel_path
    return terms(stem_path.replace("/", " ").replace("-", "_"))
