"""What the model can call.

Each tool is a small class with ``run(args, env) -> Observation``; its model-facing ``name``,
``description``, JSON-schema ``parameters`` and ``mutates`` flag are one entry of
``specs.toml`` (loaded by ``spec.py``), so all the prompt text about tools is in one file. The
names and argument names are part of the product: they appear in transcripts and scripted
runs, so they never change silently. ``registry.py`` lists them; ``base.py`` holds the shared
types and the path confinement every tool goes through.
"""
