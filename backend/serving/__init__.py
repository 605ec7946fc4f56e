"""``codeagent serve``'s HTTP server: the plumbing (``server``, ``http_handler``,
``connections``, ``peer_watch``, ``api_checks``) and one translation per protocol onto the
one generation object (``generation.py``): OpenAI chat and text completions (``openai_api``,
``openai_replies``), Anthropic Messages (``anthropic_api``, ``anthropic_replies``), OpenAI
Responses (``responses_api``, ``responses_replies``, ``responses_tools``)."""
