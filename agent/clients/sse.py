"""Server-sent events as the model APIs send them: ``event:`` and ``data:`` lines, a blank
line ending each event, ``:`` comments as keep-alives, and a ``data: [DONE]`` sentinel that
ends the stream (OpenAI chat completions). Every data payload is one JSON object.

Covered: named and unnamed events, data split over several ``data:`` lines (joined with
newlines, as the format says). Not covered: ``id:`` and ``retry:`` (reconnection is not how
these APIs resume; a broken stream is retried from scratch by the caller).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from codeagent.agent.protocol import ModelError

Event = tuple[str, dict[str, Any]]  # (event name, "" when none was given; the JSON payload)


def events(lines: Iterable[str]) -> Iterator[Event]:
    name, data = "", []
    for line in lines:
        if not line:
            if data:
                payload = "\n".join(data)
                if payload.strip() == "[DONE]":
                    return
                yield name, _parse(payload)
            name, data = "", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    if data and "\n".join(data).strip() != "[DONE]":
        yield name, _parse("\n".join(data))  # a last event the server did not end with a blank line


def _parse(payload: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as err:
        raise ModelError(f"the endpoint sent a malformed stream chunk: {payload[:200]}") from err
    if not isinstance(value, dict):
        raise ModelError(f"the endpoint sent a stream chunk that is not an object: {payload[:200]}")
    return value
