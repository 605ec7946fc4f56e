"""CSV in and out. Values that look like numbers become int or float; empty cells become None."""

from __future__ import annotations

import csv
import io
from pathlib import Path


def convert(text: str):
    text = text.strip()
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_csv(text: str, delimiter: str = ",") -> list[dict]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    return [{key.strip(): convert(value or "") for key, value in row.items() if key is not None} for row in reader]


def read_csv(path: str | Path, delimiter: str = ",") -> list[dict]:
    """Rows of a CSV file as dicts. Files saved by Excel ("CSV UTF-8") start with a byte order mark."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return parse_csv(handle.read(), delimiter)


def write_csv(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
