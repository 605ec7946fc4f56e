"""The full-screen terminal UI: ``codeagent`` inside a repository.

The same plan-act loop as ``codeagent fix``, with every model client, driven from a Textual
app. ``launch`` (the command line's entry) wires a ``setup.Setup`` from the flags and the
config; ``application.CodeAgentApp`` runs the session (``agent.interactive.Session``: the
agent, its transcript, resume, undo) on a Textual thread worker (``working``), and
``chat.ChatScreen`` shows what the worker reports, one ``messages`` class per kind. The
modules below hold the pieces: ``entries`` (transcript widgets), ``panels`` (plan, activity,
approval, status), ``prompt`` (the editor, history, ``@`` completion), ``slash`` (commands),
``approvals`` (a question between the worker and the screen), ``replay`` (a resumed
session's transcript), ``preview`` (what an approval shows), ``history`` (what was sent,
kept on disk). Saved sessions are listed by ``agent.runs``; a running command is stopped by
``sandbox.supervisors``.

Not covered: mouse selection of transcript text across entries, editing a sent message, more
than one conversation at a time, and real progress for a prefill (it shows elapsed time).
"""
