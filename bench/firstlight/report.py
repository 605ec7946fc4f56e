"""The table ``codeagent bench first-light`` prints at the end: each stage, then each target."""

from __future__ import annotations

from typing import Any


def table(summary: dict[str, Any]) -> str:
    gpus = summary["machine"]["gpus"]
    lines = [
        f"first light on {', '.join(gpus) if isinstance(gpus, list) else 'no GPU seen by nvidia-smi'}"
        f"{' (tiny: a dry run)' if summary['tiny'] else ''}, {summary.get('wall_s', 0)} s of {summary['budget_s']:.0f}",
        f"{'stage':<24}{'status':<10}{'wall s':>8}{'limit s':>9}  why",
    ]
    for s in summary["stages"]:
        lines.append(
            f"{s['stage']:<24}{s['status']:<10}{_num(s.get('wall_s')):>8}{_num(s.get('limit_s')):>9}  {s.get('why', '')}"
        )
    targets = summary.get("targets")
    if targets:
        lines.append(f"targets{'' if targets['applies'] else ' (a tiny run: they do not apply)'}:")
        for name, c in targets["checks"].items():
            sign = "<" if c["below"] else ">="
            lines.append(
                f"  {name:<42} {_num(c['value'])} {sign} {c['threshold']}: {c['status']}"
                + (f" ({c['why']})" if "why" in c else f" ({c['at']})")
            )
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None else str(value)
