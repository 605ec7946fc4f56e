"""Storage: the task list as one JSON file, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

FORMAT_VERSION = 3


class StoreError(Exception):
    pass


def default_path() -> Path:
    return Path(os.environ.get("TODO_FILE") or Path.home() / ".todo.json")


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StoreError(f"{path} is not valid JSON: {err}") from err
    items = data.get("items", []) if isinstance(data, dict) else data
    for item in items:
        _migrate(item)
    return items


def _migrate(item: dict) -> None:
    # Files written before 0.3 call the due date "due".
    if "due" in item:
        item["due_date"] = item.pop("due")
    item.setdefault("due_date", None)
    item.setdefault("priority", 0)
    item.setdefault("done", False)


def save(path: Path, items: list[dict]) -> None:
    text = json.dumps({"version": FORMAT_VERSION, "items": items}, indent=2, ensure_ascii=False)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text + "\n", encoding="utf-8")
    os.replace(partial, path)


def next_id(items: list[dict]) -> int:
    return max((item["id"] for item in items), default=0) + 1


def add(items: list[dict], text: str, due_date: str | None = None, priority: int = 0) -> dict:
    item = {"id": next_id(items), "text": text, "done": False, "due_date": due_date, "priority": priority}
    items.append(item)
    return item


def find(items: list[dict], item_id: int) -> dict | None:
    return next((item for item in items if item["id"] == item_id), None)
