"""The server ``test_soak.py`` runs in a process of its own: ``codeagent serve``'s server over the
real engine and a tiny checkpoint, stopped as ``codeagent serve`` stops (SIGTERM becomes an
interrupt, the server drains, exit 0). Prints its URL on stdout once it listens.

Usage: ``python soak_server.py CHECKPOINT GRACE_S``
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.chat.model import ChatModel
from codeagent.backend.engine import Engine
from codeagent.backend.loader import load_model, read_config
from codeagent.backend.service import EngineService
from codeagent.backend.serving.server import OpenAIServer


def main(folder: Path, grace_s: float) -> int:
    chat_model = ChatModel.from_dir(folder, read_config(folder), "tiny")
    loaded = load_model(folder)
    engine = Engine(
        loaded.model, chat_model.tokenizer.eos_token_ids, "cpu", cache=CacheConfig(num_blocks=256)
    )
    service = EngineService(engine)
    server = OpenAIServer(("127.0.0.1", 0), chat_model, service, max_output_tokens=16, grace_s=grace_s)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    print(server.url, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), float(sys.argv[2])))
