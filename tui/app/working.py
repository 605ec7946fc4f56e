"""How a turn of the app's worker runs: a Textual thread worker, with two guarantees.

- ``reporting``: whatever the turn does, the screen hears ``WorkDone`` last, after everything
  the turn reported; a crash (a bug in codeagent) is shown before it (``WorkCrashed``, the
  traceback) and marks the worker failed, and the session goes on.
- ``abandonable``: the turn's work runs on a daemon thread that the worker waits for, unless
  the worker is cancelled (the app closing). Textual joins its worker threads before the
  process ends, so without this a model still reading its prompt (a long prefill, a remote
  server yet to answer) would hold up quitting until its first token. The app sets the
  session's cancel event as it closes, so the agent stops at its next token anyway; a daemon
  thread still waiting for one simply ends with the process.
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from collections.abc import Callable, Iterator

from textual.message import Message
from textual.worker import get_current_worker

from codeagent.tui.app.messages import WorkCrashed, WorkDone

POLL_S = 0.1  # how often a waiting worker looks whether it was cancelled


@contextlib.contextmanager
def reporting(post: Callable[[Message], object]) -> Iterator[None]:
    """Around a turn: a crash posted as ``WorkCrashed`` (and raised on), ``WorkDone`` posted last."""
    try:
        yield
    except Exception:  # a bug in codeagent: shown, the worker marked failed, the session goes on
        post(WorkCrashed(traceback.format_exc()))
        raise
    finally:
        post(WorkDone())


def abandonable(work: Callable[[], object]) -> None:
    """``work()`` on a daemon thread, waited for until it ends or the calling worker is
    cancelled; what it raises is raised here."""
    failed: list[Exception] = []

    def run() -> None:
        try:
            work()
        except Exception as err:  # handed to the waiting worker, which reports it
            failed.append(err)

    thread = threading.Thread(target=run, name="codeagent-agent", daemon=True)
    thread.start()
    worker = get_current_worker()
    while thread.is_alive():
        thread.join(POLL_S)
        if worker.is_cancelled:
            return
    if failed:
        raise failed[0]
