"""The localiser: code-aware words, quoted cues, and the ranking through the real tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

from codeagent.agent.session import repo_context
from codeagent.tools.base import ToolEnv, ToolSettings, run_tool
from codeagent.tools.ignore import iter_files
from codeagent.tools.registry import get_tool
from codeagent.tools.repomap.cues import match_files, read_cues
from codeagent.tools.repomap.index import index_file, owners
from codeagent.tools.repomap.localise import corpus_of, rank
from codeagent.tools.repomap.tags import extract
from codeagent.tools.repomap.words import path_terms, stem, terms


def test_identifiers_split_into_stemmed_parts_and_keep_their_whole():
    assert terms("parseHTTPHeaders") == ["pars", "http", "header", "parsehttpheaders"]
    assert terms("get_duration") == ["duration", "get_duration"]  # "get" is a stop word, the whole is not
    assert terms("utf8Decode") == ["utf", "decod", "utf8decode"]  # one-character parts dropped
    assert terms("Rounding is wrong") == ["round", "wrong"]


def test_numbers_and_operators_are_terms_and_stop_words_are_not():
    assert terms("prints -5 as --5 when x <= 1.5") == ["print", "-", "5", "--", "5", "x", "<=", "1.5"]
    assert terms("the and of if return self") == []


def test_stemming_makes_both_sides_agree():
    assert stem("parsed") == stem("parses") == stem("parsing") == stem("parse") == "pars"
    assert stem("classes") == stem("class") == "class"
    assert stem("status") == "status" and stem("entries") == stem("entry") == "entry"
    assert path_terms("src/my-lib/HttpClient.ts") == ["src", "lib", "my_lib", "http", "client", "httpclient"]


def test_cues_read_frames_files_and_code_shaped_words():
    issue = (
        "Calling `Config.get_duration('a')` fails in values.py:\n"
        'Traceback:\n  File "/usr/lib/site-packages/cfg/values.py", line 12, in as_duration\n'
        "    at parseRange (src/range.js:40:7)\n"
        "Plain words like duration are not identifiers."
    )
    cues = read_cues(issue)
    assert ("/usr/lib/site-packages/cfg/values.py", 12, "as_duration") in cues.frames
    assert ("src/range.js", 40, "parseRange") in cues.frames
    assert "values.py" in cues.files
    assert {"Config", "get_duration", "as_duration", "parseRange"} <= cues.idents
    assert "duration" not in cues.idents and "Plain" not in cues.idents
    paths = {"cfg/values.py": 0, "cfg/other.py": 1, "a/util.py": 2, "b/util.py": 3}
    assert match_files("/usr/lib/site-packages/cfg/values.py", paths) == ["cfg/values.py"]
    assert sorted(match_files("util.py", paths)) == ["a/util.py", "b/util.py"]
    assert match_files("missing.py", paths) == []


def test_each_line_belongs_to_its_innermost_definition():
    source = b"class A:\n    x = 1\n    def f(self):\n        return 2\n    y = 3\n\ndef g():\n    pass\n"
    index = index_file("m.py", source, extract(source, "python", "m.py"))
    names = [d.name for d in index.defs]
    assert [names[i] if i >= 0 else None for i in owners(index.defs, 8)] == [
        "A", "A", "f", "f", "A", None, "g", "g",
    ]  # fmt: skip
    assert (names.index("f"), 0, 1) in index.postings["2"]  # the method's own body
    assert "3" in index.postings and all(names[d] == "A" for d, *_ in index.postings["3"])


PROJECT = {
    "shop/prices.py": (
        "from shop.money import format_amount\n\n"
        "def price_label(item):\n    return format_amount(item.cents)\n\n"
        "def discount(item, percent):\n    return item.cents * percent // 100\n"
    ),
    "shop/money.py": (
        "def format_amount(cents):\n"
        '    """Cents as a decimal amount with a minus sign for negative numbers."""\n'
        "    sign = '-' if cents < 0 else ''\n"
        "    return f'{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}'\n\n"
        "def parse_amount(text):\n    return int(text.replace('.', ''))\n"
    ),
    "shop/cart.py": "class Cart:\n    def total(self):\n        return sum(i.cents for i in self.items)\n",
    "tests/test_money.py": "def test_negative_amount_minus_sign():\n    assert format_amount(-5)\n",
}


def make_project(root: Path) -> Path:
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_symptom_in_words_finds_the_function_and_tests_come_after(tmp_path):
    root = make_project(tmp_path / "shop")
    corpus = corpus_of(root, iter_files(root), tmp_path / "cache")
    ranked = [r.definition.name for r in rank(corpus, "Negative amounts print two minus signs")]
    assert ranked[0] == "format_amount"
    assert ranked.index("test_negative_amount_minus_sign") > ranked.index("format_amount")


def test_quoted_frame_wins_and_the_graph_lifts_what_a_strong_match_calls(tmp_path):
    root = make_project(tmp_path / "shop")
    corpus = corpus_of(root, iter_files(root), tmp_path / "cache")
    trace = 'File "/srv/app/shop/cart.py", line 3, in total\nTypeError'
    assert rank(corpus, trace)[0].definition.name == "total"
    ranked = [r.definition.name for r in rank(corpus, "the label of an item shows the wrong price")]
    assert ranked[0] == "price_label" and "format_amount" in ranked  # called by it, no word in common


def test_repo_map_with_a_focus_lists_the_best_definitions_with_line_ranges_first(tmp_path):
    root = make_project(tmp_path / "shop")
    env = ToolEnv(root, settings=ToolSettings(cache_dir=tmp_path / "cache", repo_map_tokens=800))
    result = run_tool(get_tool("repo_map"), {"focus": "negative amounts print two minus signs"}, env)
    lines = result.text.splitlines()
    assert result.ok and lines[0].startswith("best matches for the focus")
    assert lines[1] == "shop/money.py:1-4  def format_amount(cents):"
    assert "outline:" in lines and "shop/money.py:" in lines  # the usual outline follows
    plain = run_tool(get_tool("repo_map"), {}, env)
    assert plain.ok and "best matches" not in plain.text


def test_search_definitions_mode_ranks_definitions(tmp_path):
    root = make_project(tmp_path / "shop")
    env = ToolEnv(root, settings=ToolSettings(cache_dir=tmp_path / "cache"))
    search = get_tool("search")
    result = run_tool(search, {"pattern": "percent discount (wrong", "mode": "definitions"}, env)
    assert result.ok and result.text.splitlines()[1] == "shop/prices.py:6-7  def discount(item, percent):"
    assert result.data["mode"] == "definitions"
    only_tests = run_tool(search, {"pattern": "minus sign", "mode": "definitions", "path": "tests"}, env)
    assert only_tests.text.splitlines()[1:] == [
        "tests/test_money.py:1-2  def test_negative_amount_minus_sign():"
    ]
    empty = run_tool(search, {"pattern": "  ", "mode": "definitions"}, env)
    assert not empty.ok and "pattern is empty" in empty.text
    regex = run_tool(search, {"pattern": "def (wrong"}, env)
    assert not regex.ok and "invalid regular expression" in regex.text  # the default mode is unchanged


def test_the_pinned_repo_map_ends_with_the_tasks_best_definitions(tmp_path):
    root = make_project(tmp_path / "shop")
    env = ToolEnv(root, settings=ToolSettings(cache_dir=tmp_path / "cache", repo_map_tokens=800))
    pinned = repo_context(env, "Negative amounts print two minus signs")
    outline = repo_context(env)
    assert pinned.startswith(outline + "\n\n")  # the map part is the same for every task
    best = pinned[len(outline) + 2 :].splitlines()
    assert best[0].startswith("best matches") and best[1] == "shop/money.py:1-4  def format_amount(cents):"
