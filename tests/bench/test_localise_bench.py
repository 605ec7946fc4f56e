"""``codeagent bench localise`` on two of codeagent's own tasks: gold targets, rankers, recall."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeagent.bench.localise import bench_localise, first_rank
from codeagent.bench.localise_gold import changed_lines, innermost, targets
from codeagent.evals.loader import BUILTIN, load_tasks
from codeagent.tools.repomap.tags import extract
from codeagent.tui.cli import main

PATCH = """\
diff --git a/m.py b/m.py
--- a/m.py
+++ b/m.py
@@ -2,4 +2,5 @@ def f():
     a = 1
-    b = 2
+    b = 3
     return a + b
+
+def g():
"""


def test_changed_lines_are_read_on_the_old_side():
    assert changed_lines(PATCH) == {"m.py": {3, 4}}  # the removed line; the tail addition's line before
    assert changed_lines("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x = 1\n") == {}


def test_targets_are_the_innermost_definitions_at_the_base(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    a = 1\n    b = 2\n    return a + b\n")
    assert targets(tmp_path, PATCH) == {("m.py", 1)}
    tags = extract(b"class A:\n    def f(self):\n        pass\n", "python", "a.py")
    assert innermost(tags, 3).name == "f" and innermost(tags, 1).name == "A"
    assert first_rank([("a", 1), ("m.py", 1)], {("m.py", 1)}) == 2 and first_rank([], {("m.py", 1)}) is None


@pytest.fixture
def two_tasks(tmp_path: Path) -> Path:
    chosen = [
        t
        for t in load_tasks(BUILTIN)
        if t.instance_id in {"tabular__median-even-count", "textkit__wrap-exact-width"}
    ]
    dataset = tmp_path / "two.jsonl"
    dataset.write_text("".join(json.dumps(t.model_dump(mode="json")) + "\n" for t in chosen))
    return dataset


def test_the_bench_ranks_each_tasks_gold_definitions(two_tasks, tmp_path):
    out = bench_localise(two_tasks, None, tmp_path / "cache")
    assert out["counted"] == 2 and not out["skipped"]
    by_id = {r["instance_id"]: r for r in out["results"]}
    assert by_id["tabular__median-even-count"]["targets"] == ["tabular/stats.py:20"]
    assert by_id["textkit__wrap-exact-width"]["first_rank"]["localise"] == 1
    assert set(out["recall"]) == {"bm25", "repomap", "localise"}
    assert out["markdown"].splitlines()[0].startswith("| ranker | recall@1 |")
    assert set(out["by_project"]) == {"codeagent-evals/tabular", "codeagent-evals/textkit"}


def test_the_command_writes_the_table_and_refuses_a_missing_dataset(two_tasks, tmp_path, capsys):
    output = tmp_path / "out.json"
    assert main(["bench", "localise", "--dataset", str(two_tasks), "--output", str(output)]) == 0
    assert json.loads(output.read_text())["counted"] == 2
    assert "| localise |" in capsys.readouterr().err
    assert main(["bench", "localise", "--dataset", str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
