"""The inside of one tool-call block, per format, turned into (name, arguments) pairs.

``toolcalls.py`` finds where a block starts and ends while text streams; the functions here
read a finished block, markers included. Each returns a list of calls, or ``None`` when the block does not
parse (the caller then keeps the raw text as content).

- Qwen3-Coder XML: ``<function=NAME>`` then ``<parameter=ARG>\\nVALUE\\n</parameter>`` pairs.
  Values are text; they are typed with the tool's JSON schema (``typed``). Missing
  ``</parameter>`` or ``</function>`` closers are tolerated, as the model sometimes drops them.
- Hermes JSON (other Qwen3 models): ``{"name": ..., "arguments": {...}}`` in the block.
- DeepSeek DSML: ``<｜DSML｜invoke name="NAME">`` holding
  ``<｜DSML｜parameter name="ARG" string="true|false">VALUE</｜DSML｜parameter>``; ``string="true"``
  values are taken verbatim, the others are JSON.

Not covered: parameter values that themselves contain the closing tag of their format.
"""

from __future__ import annotations

import json
import re
from typing import Any

Call = tuple[str, dict[str, Any]]
Schemas = dict[str, dict[str, Any]]  # tool name -> its JSON schema for parameters

_XML_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|(?=<function=)|\Z)", re.DOTALL)
_XML_PARAMETER = re.compile(
    r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|\Z)", re.DOTALL
)
_DSML = "｜DSML｜"
_DSML_INVOKE = re.compile(rf'<{_DSML}invoke name="([^"]*)">(.*?)</{_DSML}invoke>', re.DOTALL)
_DSML_PARAMETER = re.compile(
    rf'<{_DSML}parameter name="([^"]*)"(?: string="(true|false)")?>(.*?)</{_DSML}parameter>', re.DOTALL
)


def _schema_types(schema: dict[str, Any]) -> list[str]:
    """The JSON types a schema allows, in its own order (``type``, or the arms of anyOf/oneOf)."""
    kinds = schema.get("type")
    found = list(kinds) if isinstance(kinds, list) else [kinds] if isinstance(kinds, str) else []
    for arm in schema.get("anyOf", []) + schema.get("oneOf", []):
        if isinstance(arm, dict):
            found += [kind for kind in _schema_types(arm) if kind not in found]
    return found


def _as_type(value: str, kind: str) -> tuple[bool, Any]:
    """(True, converted) when ``value`` reads as JSON type ``kind``."""
    text = value.strip()
    if kind == "integer" and re.fullmatch(r"-?\d+", text):
        return True, int(text)
    if kind == "number" and re.fullmatch(r"-?\d+", text):
        return True, int(text)
    if kind == "number" and re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        return True, float(text)
    if kind == "boolean" and text.lower() in ("true", "false"):
        return True, text.lower() == "true"
    if kind == "null" and text.lower() in ("null", "none"):
        return True, None
    if kind in ("array", "object"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return False, None
        return isinstance(parsed, list if kind == "array" else dict), parsed
    return False, None


def typed(value: str, schema: dict[str, Any]) -> Any:
    """A parameter's text converted to the first type its schema allows that fits; else the text.

    A schema that allows strings keeps the text unless another allowed type fits first in the
    schema's own order, so ``["integer", "string"]`` reads ``"3"`` as 3 and ``"abc"`` as text.
    """
    for kind in _schema_types(schema):
        if kind == "string":
            return value
        fits, converted = _as_type(value, kind)
        if fits:
            return converted
    return value


def _strip_one_newline(text: str) -> str:
    """The XML format puts the value on its own lines; exactly one newline each side is markup."""
    text = text[1:] if text.startswith("\n") else text
    return text[:-1] if text.endswith("\n") else text


def parse_xml_calls(block: str, schemas: Schemas) -> list[Call] | None:
    calls = []
    for name, body in _XML_FUNCTION.findall(block):
        properties = (schemas.get(name.strip()) or {}).get("properties") or {}
        arguments = {
            param.strip(): typed(_strip_one_newline(raw), properties.get(param.strip()) or {})
            for param, raw in _XML_PARAMETER.findall(body)
        }
        calls.append((name.strip(), arguments))
    return calls or None


def parse_hermes_call(block: str) -> list[Call] | None:
    try:
        data = json.loads(block)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    return [(data["name"], arguments)] if isinstance(arguments, dict) else None


def parse_qwen_block(block: str, schemas: Schemas) -> list[Call] | None:
    """A ``<tool_call>`` block (or a bare ``<function=`` one): XML style first, then Hermes JSON."""
    if "<function=" in block:
        return parse_xml_calls(block, schemas)
    return parse_hermes_call(block.removeprefix("<tool_call>").removesuffix("</tool_call>").strip())


def _dsml_value(raw: str, is_string: str, schema: dict[str, Any]) -> Any:
    if is_string == "true":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        # The model said "not a string" but wrote no JSON; the schema is the next best guide.
        return typed(raw, schema)


def parse_dsml_block(block: str, schemas: Schemas) -> list[Call] | None:
    calls = []
    for name, body in _DSML_INVOKE.findall(block):
        properties = (schemas.get(name) or {}).get("properties") or {}
        arguments = {
            param: _dsml_value(raw, is_string, properties.get(param) or {})
            for param, is_string, raw in _DSML_PARAMETER.findall(body)
        }
        calls.append((name, arguments))
    return calls or None
