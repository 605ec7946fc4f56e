"""Saved interactive sessions of a repository: listed by ``agent.runs``."""

from __future__ import annotations

from codeagent.agent.runs import SessionInfo, sessions

__all__ = ["SessionInfo", "sessions"]
