"""Where commands run: process-tree control, limits, environment scrubbing.

This package imports nothing else of codeagent but ``codeagent.xdg``. Confinement (bubblewrap,
or Landlock plus seccomp where namespaces are unavailable: ``choose.py``), approval policy and
shadow-git checkpoints are built on top of ``process.run_command``.
"""
