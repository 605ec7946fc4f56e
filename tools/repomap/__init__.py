"""The repo map: the repository's definitions ranked by how much the code in play uses them.

``tags.py`` extracts definitions and references with tree-sitter (queries in
``queries/*-tags.scm``, data not code); ``cache.py`` keeps each file's tags on disk keyed
by a hash of its content; ``rank.py`` builds a file graph from references to definitions
and runs personalised PageRank toward the focus files and identifiers; ``render.py`` fits
the best-ranked definitions into a token budget; ``tool.py`` offers it to the model.

Covered: Python, JavaScript, TypeScript/TSX, Go, Rust, Java. Not covered: other
languages (their files are listed by name only when budget remains), cross-language
references, and name resolution beyond equal identifiers (two unrelated ``run`` methods
link their files; common names are damped to limit the noise).
"""
