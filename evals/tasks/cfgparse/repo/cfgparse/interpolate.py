"""``${key}`` (same section) and ``${section.key}`` references; ``$$`` is a literal ``$``."""

from __future__ import annotations

import re

from cfgparse.errors import ParseError
from cfgparse.names import normalize

REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
MAX_DEPTH = 10


def expand(sections: dict[str, dict[str, str]], section: str, value: str, depth: int = 0) -> str:
    if depth > MAX_DEPTH:
        raise ParseError(f"references nested more than {MAX_DEPTH} deep (a cycle?) in {value!r}")

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        target_section, key = _split(match.group(1), section)
        try:
            raw = sections[target_section][key]
        except KeyError:
            raise ParseError(f"unknown reference ${{{match.group(1)}}}") from None
        return expand(sections, target_section, raw, depth + 1)

    return REFERENCE.sub(replace, value)


def _split(reference: str, section: str) -> tuple[str, str]:
    if "." in reference:
        target, _, key = reference.rpartition(".")
        return normalize(target), normalize(key)
    return section, normalize(reference)
