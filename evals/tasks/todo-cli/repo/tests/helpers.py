import io
from datetime import datetime, timedelta, timezone

from todo.cli import main

NOON_UTC = datetime(2024, 3, 10, 12, 0, tzinfo=timezone.utc)


def todo(tmp_path, *argv, now=NOON_UTC):
    out = io.StringIO()
    code = main(["--file", str(tmp_path / "todo.json"), *argv], now=now, out=out)
    return code, out.getvalue()


def zone(hours):
    return timezone(timedelta(hours=hours))
