"""Text in and out of the model: tokenizer, chat templates and tool-call parsing.

``tokenizer.py`` wraps ``tokenizers`` (special tokens, end-of-sequence ids, the checkpoint's
chat templates) and streams text without splitting UTF-8 characters; ``template.py`` renders
OpenAI-shaped conversations with the checkpoint's own Jinja template, or the family's
built-in one from ``templates/``, so that each turn's prompt extends the previous one;
``toolcalls.py`` turns generated text back into content, reasoning and OpenAI tool calls
while it streams, with ``call_formats.py`` reading each finished call block; ``families.py``
says which family a checkpoint belongs to and what its markup looks like.
"""
