import json

import pytest

from todo import store


def test_roundtrip(tmp_path):
    path = tmp_path / "todo.json"
    items = []
    store.add(items, "Buy milk")
    store.add(items, "Café au lait", due_date="2024-05-01", priority=1)
    store.save(path, items)
    assert store.load(path) == items


def test_missing_file_is_an_empty_list(tmp_path):
    assert store.load(tmp_path / "none.json") == []


def test_ids_keep_growing(tmp_path):
    items = [{"id": 7, "text": "x", "done": True}]
    assert store.add(items, "y")["id"] == 8


def test_old_files_are_migrated(tmp_path):
    path = tmp_path / "todo.json"
    path.write_text(json.dumps([{"id": 1, "text": "old", "done": False, "due": "2024-01-02"}]))
    assert store.load(path) == [{"id": 1, "text": "old", "done": False, "due_date": "2024-01-02", "priority": 0}]


def test_broken_file_is_an_error(tmp_path):
    path = tmp_path / "todo.json"
    path.write_text("{not json")
    with pytest.raises(store.StoreError):
        store.load(path)
