"""Where commands run: process-tree control, limits, environment scrubbing.

This package imports nothing else of codeagent. Confinement with bubblewrap, approval
policy and shadow-git checkpoints are built on top of ``process.run_command``.
"""
