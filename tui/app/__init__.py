"""The full-screen terminal UI: ``codeagent`` inside a repository.

The same plan-act loop as ``codeagent fix``, with every model client, driven from a Textual
app. ``launch`` (the command line's entry) wires a ``conversation.Setup`` from the flags and
the config; ``application.CodeAgentApp`` is the screen; ``conversation.Conversation`` runs the
agent on a worker thread and reports events up as messages. The modules below hold the
pieces: ``entries`` (transcript widgets), ``panels`` (plan, activity, approval, status),
``prompt`` (the editor, history, ``@`` completion), ``slash`` (commands), ``replay`` (a
resumed session's transcript), ``preview`` (what an approval shows), ``sessions`` and
``history`` (what is kept on disk). The session itself (agent, transcript, resume, undo) is
``agent.interactive.Session``; stopping a running command is ``sandbox.supervisors``.

Not covered: mouse selection of transcript text across entries, editing a sent message, more
than one conversation at a time, and real progress for a prefill (it shows elapsed time).
"""
