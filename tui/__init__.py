"""The ``codeagent`` command (``cli.py``) and the full-screen Textual app."""
