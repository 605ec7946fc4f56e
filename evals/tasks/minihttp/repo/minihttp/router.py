"""Routes: path patterns with typed parameters (``/users/<int:id>``), matched by method and path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from minihttp.errors import HTTPError

CONVERTERS = {"str": (r"[^/]+", str), "int": (r"\d+", int), "path": (r".+", str)}
PARAMETER = re.compile(r"<(?:(?P<kind>\w+):)?(?P<name>\w+)>")


@dataclass
class Route:
    pattern: str
    handler: object
    methods: tuple[str, ...]
    regex: re.Pattern = field(init=False)
    casts: dict = field(init=False)

    def __post_init__(self) -> None:
        self.casts = {}
        parts, position = [], 0
        for match in PARAMETER.finditer(self.pattern):
            kind = match.group("kind") or "str"
            if kind not in CONVERTERS:
                raise ValueError(f"unknown converter {kind!r} in {self.pattern!r}")
            expression, cast = CONVERTERS[kind]
            parts.append(re.escape(self.pattern[position : match.start()]))
            parts.append(f"(?P<{match.group('name')}>{expression})")
            self.casts[match.group("name")] = cast
            position = match.end()
        parts.append(re.escape(self.pattern[position:]))
        self.regex = re.compile("".join(parts))

    def match(self, path: str) -> dict | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {name: self.casts[name](value) for name, value in found.groupdict().items()}


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, pattern: str, handler, methods=("GET",)) -> None:
        self.routes.append(Route(pattern, handler, tuple(m.upper() for m in methods)))

    def match(self, method: str, path: str):
        """(handler, params) for the first route matching both; HTTPError 404 or 405 otherwise."""
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if method in route.methods or (method == "HEAD" and "GET" in route.methods):
                return route.handler, params
            allowed.extend(m for m in route.methods if m not in allowed)
        if allowed:
            raise HTTPError(405, f"{method} is not allowed here", [("Allow", ", ".join(allowed))])
        raise HTTPError(404, f"no route for {path}")
