"""The embedded MoE runtime (loader, models, kernels, cache, engine, server).

It imports nothing else of codeagent; the agent reaches it only through the wiring in
``codeagent.tui.cli`` and ``codeagent.evals``, by the model-client protocol's shape.
"""
