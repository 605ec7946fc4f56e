"""The WSGI application: routes requests to handlers and turns what they return into responses."""

from __future__ import annotations

from minihttp.errors import HTTPError
from minihttp.request import Request
from minihttp.response import Response, json_response
from minihttp.router import Router


class App:
    def __init__(self) -> None:
        self.router = Router()

    def route(self, pattern: str, methods=("GET",)):
        def register(handler):
            self.router.add(pattern, handler, methods)
            return handler

        return register

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            handler, params = self.router.match(request.method, request.path)
            response = _as_response(handler(request, **params))
        except HTTPError as err:
            response = json_response({"error": err.message}, err.status)
            for name, value in err.headers:
                response.headers.add(name, value)
        if request.method == "HEAD":
            length = str(len(response.body))
            response.body = b""
            return _with_length(response, length, start_response)
        return response.wsgi(start_response)


def _as_response(result) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, (str, bytes)):
        return Response(result)
    return json_response(result)


def _with_length(response: Response, length: str, start_response):
    headers = [pair for pair in response.headers.items() if pair[0].lower() != "content-length"]
    start_response(response.status_line(), [*headers, ("Content-Length", length)])
    return [b""]
