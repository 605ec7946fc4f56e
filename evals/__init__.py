"""SWE-style evaluation: a task set of our own (``tasks/``), loaders for SWE-bench files, and
the runner, grader and reports behind ``codeagent eval``. See ``docs/evals.md``."""
