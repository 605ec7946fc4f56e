"""The incoming request, read from a WSGI environ."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from urllib.parse import unquote_plus

from minihttp.errors import HTTPError
from minihttp.headers import Headers

# WSGI passes these two without the HTTP_ prefix (PEP 3333).
UNPREFIXED = ("CONTENT_TYPE", "CONTENT_LENGTH")


def parse_query(text: str) -> dict[str, list[str]]:
    """``a=1&b=x+y&a=2`` -> ``{"a": ["1", "2"], "b": ["x y"]}`` (form encoding: + is a space)."""
    result: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        result.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    return result


def headers_from_environ(environ: dict) -> Headers:
    headers = Headers()
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in UNPREFIXED:
            name = key
        else:
            continue
        if value != "":
            headers.add(name.replace("_", "-").title(), value)
    return headers


class Request:
    def __init__(self, environ: dict) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO") or "/"
        self.query = parse_query(environ.get("QUERY_STRING", ""))
        self.headers = headers_from_environ(environ)
        self._body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
            stream = self.environ.get("wsgi.input")
            self._body = stream.read(length) if stream and length else b""
        return self._body

    def json(self):
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/json":
            raise HTTPError(400, f"expected a JSON body (Content-Type: application/json), got {content_type or 'none'}")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise HTTPError(400, f"invalid JSON body: {err}") from None

    @property
    def cookies(self) -> dict[str, str]:
        jar = SimpleCookie()
        jar.load(self.headers.get("Cookie") or "")
        return {name: morsel.value for name, morsel in jar.items()}
