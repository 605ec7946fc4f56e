import pytest

from cfgparse.config import Config
from cfgparse.errors import ParseError

TEXT = """
[server]
host = example.org
port = 8080
debug = off
timeout = 30s
plugins = auth, cache

[paths]
root = /srv/app
logs = ${root}/logs
site = ${server.host}/static
price = $$5
"""


def test_typed_getters():
    config = Config.from_text(TEXT)
    assert config.get("server", "host") == "example.org"
    assert config.get_int("server", "port") == 8080
    assert config.get_bool("server", "debug") is False
    assert config.get_duration("server", "timeout") == 30.0
    assert config.get_list("server", "plugins") == ["auth", "cache"]


def test_defaults():
    config = Config.from_text(TEXT)
    assert config.get_int("server", "workers", 4) == 4
    assert config.get("nowhere", "x", None) is None
    with pytest.raises(ParseError):
        config.get("server", "workers")


def test_interpolation():
    config = Config.from_text(TEXT)
    assert config.get("paths", "logs") == "/srv/app/logs"
    assert config.get("paths", "site") == "example.org/static"
    assert config.get("paths", "price") == "$5"


def test_lookups_ignore_case():
    config = Config.from_text(TEXT)
    assert config.get("SERVER", "Host") == "example.org"


def test_cycles_are_errors():
    config = Config.from_text("a = ${b}\nb = ${a}")
    with pytest.raises(ParseError, match="cycle"):
        config.get("", "a")
