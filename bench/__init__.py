"""Speed and memory measurements: ``codeagent bench ...``.

Each scenario is one module named after what it measures (``engine``, ``codebase``,
``load``, ``generate``, ``tool_calls``, ``sandbox_overhead``, ``repomap``), with the
subpackages ``kernels/`` (Triton kernels against their torch references, tile tuning) and
``gpu/`` (a released configuration, full size, on one device against transformers and
the bandwidth roofline). What they build models from lives here too: random weights of
the released configurations (``random_weights``), small random checkpoints
(``checkpoint``), the roofline (``roofline``) and the timers (``timing``).

``command.register`` adds the ``bench`` subcommands to the ``codeagent`` parser;
``handlers`` runs them and writes the JSON. Parsing imports nothing heavy: each handler
imports its scenario (and torch) when it runs.

Layering: bench may import backend, tools, sandbox and agent; only the command-line
wiring (``tui/``) imports bench, and no runtime package does (import-linter contracts in
``pyproject.toml``).
"""
