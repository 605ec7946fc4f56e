import json

from helpers import todo


def test_add_then_list(tmp_path):
    assert todo(tmp_path, "add", "Buy milk")[0] == 0
    assert todo(tmp_path, "add", "Call mum", "--priority", "2")[0] == 0
    code, out = todo(tmp_path, "list")
    assert code == 0
    assert out.splitlines() == ["[ ]   2  Call mum  !!", "[ ]   1  Buy milk"]


def test_done_hides_the_task(tmp_path):
    todo(tmp_path, "add", "Buy milk")
    todo(tmp_path, "add", "Call mum")
    assert todo(tmp_path, "done", "1") == (0, "done 1: Buy milk\n")
    assert todo(tmp_path, "list")[1] == "[ ]   2  Call mum\n"
    assert "[x]   1  Buy milk" in todo(tmp_path, "list", "--all")[1]


def test_empty_list(tmp_path):
    assert todo(tmp_path, "list") == (0, "nothing to do\n")


def test_bad_due_date_is_refused(tmp_path):
    assert todo(tmp_path, "add", "x", "--due", "someday")[0] == 2


def test_export_json(tmp_path):
    todo(tmp_path, "add", "Buy milk", "--priority", "1")
    data = json.loads(todo(tmp_path, "export", "--format", "json")[1])
    assert data == [{"id": 1, "text": "Buy milk", "done": False, "due_date": None, "priority": 1}]


def test_limit_shows_the_first_page(tmp_path):
    for n in range(5):
        todo(tmp_path, "add", f"task {n + 1}")
    out = todo(tmp_path, "list", "--limit", "2")[1]
    assert [line.split()[2] for line in out.splitlines()] == ["1", "2"]
