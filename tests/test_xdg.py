"""The XDG base folders: a variable wins, an empty one counts as unset, defaults under home."""

from __future__ import annotations

from pathlib import Path

from codeagent import xdg


def test_a_variable_wins_over_the_default():
    env = {"HOME": "/h", "XDG_CACHE_HOME": "/c"}
    assert xdg.base("cache", env) == Path("/c")
    assert xdg.folder("cache", env) == Path("/c/codeagent")


def test_defaults_under_home_and_empty_counts_as_unset():
    env = {"HOME": "/h", "XDG_STATE_HOME": ""}
    assert [xdg.base(kind, env) for kind in xdg.DEFAULTS] == [
        Path("/h/.local/state"),
        Path("/h/.cache"),
        Path("/h/.config"),
        Path("/h/.local/share"),
    ]


def test_another_home_and_the_process_environment(monkeypatch, tmp_path):
    assert xdg.base("config", {}, Path("/nonexistent")) == Path("/nonexistent/.config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert xdg.folder("config") == tmp_path / "codeagent"
