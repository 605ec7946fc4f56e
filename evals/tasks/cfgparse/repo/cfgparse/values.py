"""Converting raw string values to Python types."""

from __future__ import annotations

import re

from cfgparse.errors import ParseError

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def as_bool(value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ParseError(f"not a boolean: {value!r} (use one of {', '.join(sorted(TRUE | FALSE))})")


def as_int(value: str) -> int:
    try:
        return int(value.strip().replace("_", ""), 0)
    except ValueError:
        raise ParseError(f"not an integer: {value!r}") from None


def as_list(value: str) -> list[str]:
    """Comma-separated items, stripped; empty items (``a,,b``, a trailing comma) are dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def as_duration(value: str) -> float:
    """Seconds in ``90``, ``90s``, ``1m30s``, ``2h``, ``1d12h``..."""
    text = value.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not DURATION.fullmatch(text):
        raise ParseError(f"not a duration: {value!r} (like 90s, 1m30s, 2h)")
    return sum(float(amount) * UNITS[unit] for amount, unit in DURATION_PART.findall(text))
