import json

from client import call, header

from minihttp.app import App
from minihttp.response import Response

app = App()


@app.route("/hello")
def hello(request):
    return "hello " + request.query.get("name", ["world"])[0]


@app.route("/users/<int:user_id>")
def user(request, user_id):
    return {"id": user_id}


@app.route("/files/<path:rest>")
def files(request, rest):
    return {"rest": rest}


@app.route("/echo", methods=["POST"])
def echo(request):
    return {"got": request.json()}


@app.route("/login", methods=["POST"])
def login(request):
    response = Response("welcome")
    response.set_cookie("session", "abc123", max_age=3600)
    return response


def test_plain_text():
    status, headers, body = call(app, path="/hello", query="name=Ada")
    assert status == "200 OK" and body == b"hello Ada"
    assert header(headers, "Content-Type") == ["text/plain; charset=utf-8"]


def test_typed_parameters():
    assert json.loads(call(app, path="/users/42")[2]) == {"id": 42}
    assert json.loads(call(app, path="/files/a/b/c.txt")[2]) == {"rest": "a/b/c.txt"}


def test_unknown_path_is_404():
    status, _, body = call(app, path="/nope")
    assert status == "404 Not Found" and json.loads(body) == {"error": "no route for /nope"}


def test_non_numeric_id_is_404():
    assert call(app, path="/users/abc")[0] == "404 Not Found"


def test_json_body_requires_json_content_type():
    status, _, body = call(app, "POST", "/echo", body=b'{"a": 1}', headers={"Content-Type": "text/plain"})
    assert status == "400 Bad Request"


def test_cookie_header():
    _, headers, _ = call(app, "POST", "/login")
    assert header(headers, "Set-Cookie") == ["session=abc123; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"]


def test_head_has_no_body():
    status, headers, body = call(app, "HEAD", "/hello")
    assert status == "200 OK" and body == b"" and header(headers, "Content-Length") == ["11"]
