"""What the model can call.

Each tool is a small class with a model-facing ``name``, a ``description``, a JSON-schema
``parameters`` object and ``run(args, env) -> Observation``. The names and argument names
are part of the product: they appear in transcripts and scripted runs, so they never change
silently. ``registry.py`` lists them; ``base.py`` holds the shared types and the path
confinement every tool goes through.
"""
