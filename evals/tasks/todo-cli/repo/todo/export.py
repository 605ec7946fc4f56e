"""`todo export`: the task list as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

FIELDS = ["id", "text", "done", "due_date", "priority"]


def to_csv(items: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow({**item, "due_date": item.get("due_date") or ""})
    return buffer.getvalue()


def to_json(items: list[dict]) -> str:
    return json.dumps([{field: item.get(field) for field in FIELDS} for item in items], indent=2, ensure_ascii=False) + "\n"
