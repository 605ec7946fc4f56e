"""Grouping rows by a column and aggregating the groups."""

from __future__ import annotations

from tabular import stats

AGGREGATES = {
    "sum": lambda values: sum(v for v in values if v is not None),
    "mean": stats.mean,
    "median": stats.median,
    "min": lambda values: min(v for v in values if v is not None),
    "max": lambda values: max(v for v in values if v is not None),
    "count": lambda values: sum(1 for v in values if v is not None),
}


def group_by(rows: list[dict], key: str) -> dict:
    """Rows by the value of ``key``, groups in order of first appearance; rows without it go to None."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row.get(key), []).append(row)
    return groups


def aggregate(rows: list[dict], key: str, spec: dict[str, str]) -> list[dict]:
    """One row per group: ``key`` and each ``column: aggregate`` of ``spec``, sorted by ``key`` (None last)."""
    unknown = set(spec.values()) - set(AGGREGATES)
    if unknown:
        raise ValueError(f"unknown aggregate(s) {', '.join(sorted(unknown))}; use {', '.join(AGGREGATES)}")
    result = []
    for value, members in group_by(rows, key).items():
        out = {key: value}
        for column, name in spec.items():
            out[column] = AGGREGATES[name]([row.get(column) for row in members])
        result.append(out)
    return sorted(result, key=lambda row: (row[key] is None, row[key] if row[key] is not None else 0))
