"""Calling a WSGI app in-process, the way a server would."""

import io
from wsgiref.util import setup_testing_defaults


def call(app, method="GET", path="/", query="", body=b"", headers=None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    environ["wsgi.input"] = io.BytesIO(body)
    setup_testing_defaults(environ)
    reply = {}

    def start_response(status, response_headers):
        reply["status"], reply["headers"] = status, response_headers

    chunks = app(environ, start_response)
    return reply["status"], reply["headers"], b"".join(chunks)


def header(headers, name):
    return [value for key, value in headers if key.lower() == name.lower()]
