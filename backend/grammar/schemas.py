"""What the grammar needs to know of a JSON schema: the tools' parameter schemas by name, the
types a schema allows (from ``type``, ``enum``/``const`` or its anyOf/oneOf arms), a string's
length bounds and exact choices, and the schema less its string arm (what a value written as
JSON must satisfy). Plain functions over dicts, lenient: anything malformed reads as "any".
"""

from __future__ import annotations

from typing import Any


def tool_schemas(tools: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    found = {}
    for tool in tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            found[function["name"]] = parameters if isinstance(parameters, dict) else {}
    return found


def allowed_types(schema: dict[str, Any]) -> list[str]:
    """The JSON types a schema allows (empty: any), from ``type``, ``enum``/``const`` or anyOf/oneOf arms."""
    kinds = schema.get("type")
    if isinstance(kinds, str):
        return [kinds]
    if isinstance(kinds, list):
        return [k for k in kinds if isinstance(k, str)]
    values = (
        schema["enum"]
        if isinstance(schema.get("enum"), list)
        else [schema["const"]]
        if "const" in schema
        else None
    )
    if values is not None:
        return sorted({"string" if isinstance(v, str) else "json" for v in values})
    arms = [a for a in schema.get("anyOf", []) + schema.get("oneOf", []) if isinstance(a, dict)]
    found: list[str] = []
    for arm in arms:
        arm_kinds = allowed_types(arm)
        if not arm_kinds:
            return []
        found += [k for k in arm_kinds if k not in found]
    return found


def length_bounds(schema: dict[str, Any]) -> tuple[int, int | str]:
    """A string's (minLength, maxLength) as regex bounds; "" is unbounded."""
    low, high = schema.get("minLength"), schema.get("maxLength")
    low = low if isinstance(low, int) and low > 0 else 0
    return low, high if isinstance(high, int) and high >= low else ""


def string_choices(schema: dict[str, Any]) -> list[str] | None:
    """The exact texts a string value may be (enum/const), or None when any text is allowed."""
    if isinstance(schema.get("enum"), list):
        return [v for v in schema["enum"] if isinstance(v, str)]
    if isinstance(schema.get("const"), str):
        return [schema["const"]]
    return None


def without_strings(schema: dict[str, Any], kinds: list[str]) -> dict[str, Any]:
    """The schema less its string arm: what a JSON-written value must satisfy."""
    if isinstance(schema.get("enum"), list):
        return {**schema, "enum": [v for v in schema["enum"] if not isinstance(v, str)]}
    if "const" in schema or "json" in kinds:
        return schema
    if isinstance(schema.get("type"), list):
        return {**schema, "type": kinds if len(kinds) > 1 else kinds[0]}
    arms = [a for a in schema.get("anyOf", []) + schema.get("oneOf", []) if isinstance(a, dict)]
    if arms:
        kept = [a for a in arms if "string" not in allowed_types(a)]
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        return {**rest, "anyOf": kept}
    return schema
