"""An approval between the agent's worker and the screen: the worker asks and waits, the user
answers (or an interrupt denies).

``ask`` runs on the worker (the session's policy calls it): "deny" at once when the session
is being stopped, else it posts ``ApprovalNeeded`` with a preview made there (the full diff
or command) and waits for ``answer``, which the UI thread calls with the user's choice
("allow", "deny" or "always"); with no question pending, an answer is dropped.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable

from textual.message import Message

from codeagent.agent.interactive import Session
from codeagent.sandbox.policy import ApprovalRequest
from codeagent.tui.app.messages import ApprovalNeeded
from codeagent.tui.app.preview import preview


class Approvals:
    def __init__(self, post: Callable[[Message], object]) -> None:
        self.post = post
        self._asking: queue.Queue[str] | None = None

    def ask(self, session: Session, request: ApprovalRequest) -> str:
        answers: queue.Queue[str] = queue.Queue(maxsize=1)
        self._asking = answers
        try:
            if session.cancel.is_set():
                return "deny"
            self.post(ApprovalNeeded(request, preview(request, session.env)))
            return answers.get()
        finally:
            self._asking = None

    def answer(self, choice: str) -> None:
        asking = self._asking
        if asking is not None:
            with contextlib.suppress(queue.Full):
                asking.put_nowait(choice)
