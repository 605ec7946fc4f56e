"""The agent side: the plan-act loop, prompt layout and context budget, transcripts,
the headless ``fix`` workflow, issue sources, and model clients (remote and scripted).

It imports ``tools`` and ``sandbox`` only. The embedded runtime meets it through the
``ModelClient`` protocol in ``protocol.py``, by shape, wired in ``codeagent.tui.cli``.
"""
