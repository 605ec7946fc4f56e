"""The `todo` command."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from todo import dates, export, render, store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo", description="A small todo list in a JSON file.")
    parser.add_argument("--file", type=Path, help="todo file (default $TODO_FILE or ~/.todo.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a task")
    add.add_argument("text")
    add.add_argument("--due", help="YYYY-MM-DD, today, tomorrow, +Nd or +Nw")
    add.add_argument("--priority", type=int, choices=range(4), default=0)
    show = sub.add_parser("list", help="list pending tasks (all of them, unless --limit is given)")
    show.add_argument("--all", action="store_true", help="include finished tasks")
    show.add_argument("--limit", type=int, default=None, help="tasks per page")
    show.add_argument("--page", type=int, default=1, help="page to show with --limit, starting at 1")
    done = sub.add_parser("done", help="mark a task as finished")
    done.add_argument("id", type=int)
    dump = sub.add_parser("export", help="print every task as CSV or JSON")
    dump.add_argument("--format", choices=["csv", "json"], default="csv")
    return parser


def main(argv: list[str] | None = None, now: datetime | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    now = now or datetime.now().astimezone()
    out = out or sys.stdout
    path = args.file or store.default_path()
    try:
        items = store.load(path)
    except store.StoreError as err:
        print(f"todo: {err}", file=sys.stderr)
        return 2
    handler = {"add": cmd_add, "list": cmd_list, "done": cmd_done, "export": cmd_export}[args.command]
    return handler(args, items, path, now, out)


def cmd_add(args, items, path, now, out) -> int:
    due = None
    if args.due:
        try:
            due = dates.parse_due(args.due, now).isoformat()
        except ValueError as err:
            print(f"todo: {err}", file=sys.stderr)
            return 2
    item = store.add(items, args.text, due, args.priority)
    store.save(path, items)
    print(f"added {item['id']}: {item['text']}", file=out)
    return 0


def cmd_list(args, items, path, now, out) -> int:
    shown = [item for item in items if args.all or not item["done"]]
    shown.sort(key=lambda item: (-item.get("priority", 0), item["id"]))
    shown = paginate(shown, args.limit, args.page)
    for item in shown:
        print(render.format_item(item, now.date()), file=out)
    if not shown:
        print("nothing to do", file=out)
    return 0


def paginate(items: list[dict], limit: int | None, page: int) -> list[dict]:
    if limit is None:
        return items
    start = (page - 1) * limit
    return items[start : start + limit]


def cmd_done(args, items, path, now, out) -> int:
    item = store.find(items, args.id)
    if item is None:
        print(f"todo: there is no task {args.id}", file=sys.stderr)
        return 1
    item["done"] = True
    store.save(path, items)
    print(f"done {item['id']}: {item['text']}", file=out)
    return 0


def cmd_export(args, items, path, now, out) -> int:
    text = export.to_csv(items) if args.format == "csv" else export.to_json(items)
    print(text, end="", file=out)
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
