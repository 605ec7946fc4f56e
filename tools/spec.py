"""The tools' model-facing contracts, read from ``specs.toml``.

A tool class names its entry and gets ``name``, ``description``, ``parameters`` (a closed JSON
schema: unknown arguments are refused) and ``mutates`` from it, so all the text the model is
told about its tools sits in one reviewable file and the classes hold only behaviour::

    class EditFile(Specified, spec="edit_file"):
        def run(self, args, env): ...

``fill`` supplies values for ``{name}`` placeholders in the description (a limit defined in
code, so the two cannot disagree). A missing entry or placeholder fails at import, not at a call.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any, ClassVar

from codeagent.tools.base import schema


@cache
def _specs() -> dict[str, dict[str, Any]]:
    text = resources.files("codeagent.tools").joinpath("specs.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


class Specified:
    """Base for tools whose name, description, schema and ``mutates`` come from ``specs.toml``."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    mutates: ClassVar[bool]

    def __init_subclass__(cls, *, spec: str, fill: dict[str, object] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        entry = _specs()[spec]
        cls.name = spec
        cls.description = entry["description"].format(**(fill or {}))
        cls.parameters = schema(entry.get("parameters", {}), entry["required"])
        cls.mutates = entry["mutates"]
