"""The SWE-style task set and its runner, grader and report."""
