"""OpenAI-compatible servers on your own machine: ``--model ollama:NAME`` (Ollama's
``/v1`` at http://127.0.0.1:11434, no key) and ``--model local:URL`` (any base URL: vLLM,
SGLang, llama.cpp's server, LM Studio; a key only if one is given).

``local:URL`` names no model, and some servers (vLLM) refuse a name they do not serve, so
the first request asks ``GET {URL}/models`` and uses the first model listed; a server that
lists none, or has no such route, gets the name ``default`` (llama.cpp's server ignores it).
"""

from __future__ import annotations

from codeagent.agent.clients.remote import RemoteClient
from codeagent.agent.clients.settings import RemoteSettings
from codeagent.agent.protocol import Completion, Message, ModelError, TokenCallback, ToolSchema

UNNAMED = "default"
HINTS = {404: "check the base URL (it usually ends in /v1) and the model name"}
OLLAMA_HINTS = {404: "check the model name (ollama list) and that Ollama is running"}


class OllamaClient(RemoteClient):
    kind = "ollama"
    hints = OLLAMA_HINTS


class LocalClient(RemoteClient):
    kind = "local"
    hints = HINTS

    def __init__(self, settings: RemoteSettings, named: bool) -> None:
        super().__init__(settings)
        self.name = f"local:{settings.base_url}"
        self._named = named  # the caller gave a model name: no need to ask the server

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        if not self._named:
            self.settings.model = self._served_model() or UNNAMED
            self._named = True
        return super().complete(messages, tools, on_token)

    def _served_model(self) -> str | None:
        try:
            listing = self.transport.get_json(f"{self.settings.base_url}/models")
        except ModelError:
            return None
        models = listing.get("data") if isinstance(listing, dict) else None
        if isinstance(models, list) and models and isinstance(models[0], dict):
            return str(models[0].get("id") or "") or None
        return None
