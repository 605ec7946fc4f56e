from minihttp.request import Request, parse_query


def test_repeated_keys():
    assert parse_query("a=1&b=2&a=3") == {"a": ["1", "3"], "b": ["2"]}


def test_percent_escapes():
    assert parse_query("city=Z%C3%BCrich&empty=") == {"city": ["Zürich"], "empty": [""]}


def test_headers_are_case_insensitive():
    request = Request({"HTTP_X_REQUEST_ID": "abc", "HTTP_ACCEPT": "text/html"})
    assert request.headers.get("x-request-id") == "abc"
    assert request.headers.get("Accept") == "text/html"


def test_cookies():
    request = Request({"HTTP_COOKIE": "session=abc; theme=dark"})
    assert request.cookies == {"session": "abc", "theme": "dark"}
