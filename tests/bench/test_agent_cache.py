"""``bench.agent_cache``'s pieces that need no CLI: replies ended like a finished model's, and the
rows that say where each prompt leaves the last one."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from codeagent.backend.sequence import Result
from codeagent.bench.agent_cache import EndedStream, Recorded, markdown, rows

END = 0


class Tokens:
    """A token stream as the engine service's: its result is there once it has been drained."""

    def __init__(self, tokens: list[int], cached: int = 0) -> None:
        self.tokens, self.cached = tokens, cached
        self.cancelled = threading.Event()
        self.result: Result | None = None
        self.at = 0

    def __iter__(self) -> Iterator[int]:
        while self.at < len(self.tokens) and not self.cancelled.is_set():
            self.at += 1
            yield self.tokens[self.at - 1]
        self.result = Result(self.tokens[: self.at], "cancelled", 10, cached_tokens=self.cached)

    def cancel(self) -> None:
        self.cancelled.set()


def test_a_reply_ends_after_the_limit_with_the_end_of_turn_id_and_keeps_the_engine_account():
    stream = EndedStream(Tokens([5, 6, 7, 8, 9], cached=32), limit=3, end=END)
    assert list(stream) == [5, 6, 7, END]
    assert stream.result is not None
    assert stream.result.token_ids == [5, 6, 7, END] and stream.result.finish_reason == "stop"
    assert stream.result.cached_tokens == 32
    ended = EndedStream(Tokens([5, END, 9]), limit=3, end=END)
    assert list(ended) == [5, END]  # the model ended its turn first


WORDS = {END: "<end>", 1: "system", 2: "\n<tools>\n", 3: "ask", 4: "reply", 5: "again", 6: "other"}


def decode(ids: list[int]) -> str:
    return " ".join(WORDS[i] for i in ids)


def test_rows_say_where_a_prompt_leaves_the_last_prompt_and_its_reply():
    def recorded(turn: int, ids: list[int], reply: list[int], cached: int) -> Recorded:
        stream = EndedStream(Tokens(reply, cached), limit=len(reply), end=END)
        list(stream)
        return Recorded(turn, ids, stream)

    requests = [
        recorded(1, [1, 2, 3], [4], 0),
        recorded(2, [1, 2, 3, 4, END, 5], [4], 4),  # extends the first and its reply
        recorded(3, [1, 6, 2, 3], [4], 1),  # the system text changed
    ]
    table = rows(requests, decode)
    assert [r["turn"] for r in table] == [1, 2, 3] and all(r["tools"] for r in table)
    assert "first_difference" not in table[0]
    assert table[1]["first_difference"] == 5 and table[1]["extends_previous"]
    assert table[1]["hit_rate"] == round(4 / 6, 4)
    assert table[2]["first_difference"] == 1 and not table[2]["extends_previous"]
    assert table[2]["was"].startswith("system \n<tools>") and table[2]["now"].startswith("system other")
    assert "(extends the last)" in markdown(table).splitlines()[3]
