"""Text in and out of the model: tokenizer, chat templates and tool-call parsing.

``tokenizer.py`` wraps ``tokenizers`` and streams text without splitting UTF-8 characters;
``template.py`` renders OpenAI-shaped conversations with the checkpoint's own Jinja
template (built-in fallbacks in ``templates/``); ``toolcalls.py`` turns generated text back
into content, reasoning and OpenAI tool calls while streaming; ``families.py`` maps a
checkpoint to its family.
"""
