"""Responses: body, status, headers, cookies; and turning them into a WSGI reply."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime
from http import HTTPStatus

from minihttp.headers import Headers


def http_date(moment: datetime) -> str:
    """RFC 7231 date (``Sun, 06 Nov 1994 08:49:37 GMT``) of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("http_date needs an aware datetime (with tzinfo)")
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


class Response:
    def __init__(
        self,
        body: str | bytes = b"",
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.status = status
        self.headers = Headers(headers)
        if "Content-Type" not in self.headers:
            self.headers.add("Content-Type", content_type)

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        expires: datetime | None = None,
        max_age: int | None = None,
        path: str = "/",
        http_only: bool = True,
        same_site: str = "Lax",
    ) -> None:
        parts = [f"{name}={value}", f"Path={path}"]
        if expires is not None:
            parts.append(f"Expires={http_date(expires)}")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if http_only:
            parts.append("HttpOnly")
        parts.append(f"SameSite={same_site}")
        self.headers.add("Set-Cookie", "; ".join(parts))

    def status_line(self) -> str:
        try:
            return f"{self.status} {HTTPStatus(self.status).phrase}"
        except ValueError:
            return f"{self.status} Unknown"

    def wsgi(self, start_response) -> list[bytes]:
        headers = [pair for pair in self.headers.items() if pair[0].lower() != "content-length"]
        headers.append(("Content-Length", str(len(self.body))))
        start_response(self.status_line(), headers)
        return [self.body]


def json_response(data, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status, content_type="application/json")
