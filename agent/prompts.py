"""Prompt templates (``prompts/*.jinja``), rendered with ``StrictUndefined`` so a missing
variable is an error at render time, never a silent blank in what the model reads."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("codeagent.agent", "prompts"),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **variables: Any) -> str:
    return _environment().get_template(f"{name}.jinja").render(**variables).strip()
