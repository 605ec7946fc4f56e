"""Text in and out of the model: tokenizer, chat templates and tool-call parsing.

``tokenizer.py`` wraps ``tokenizers`` (special tokens, end-of-sequence ids, the checkpoint's
chat templates) and streams text without splitting UTF-8 characters; ``template.py`` renders
OpenAI-shaped conversations with the checkpoint's own Jinja template, or the family's
built-in one from ``templates/``, so that each turn's prompt extends the previous one;
``toolcalls.py`` turns generated text back into content, reasoning and OpenAI tool calls
while it streams, with ``call_formats.py`` reading each finished call block; ``families.py``
says which family a checkpoint belongs to and what its markup looks like; ``stopping.py``
ends a reply at a stop string. ``model.py`` holds one checkpoint's text side (``ChatModel``),
``prompt.py`` turns requests into prompts with it, and ``continuity.py`` keeps each turn's
prompt an exact token extension of the last, so the prefix cache hits.

This package knows text, not the engine: ``backend/generation.py`` joins the two.
"""
