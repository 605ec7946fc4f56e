"""``codeagent bench codebase``: the whole codebase in context, cold, warm and from disk.

Runs the real agent (``agent.session.new_agent``, the embedded client and engine) on a
repository whose source fits half the model's window, so the pinned prefix is the whole
codebase, and times the first token of each model call: turn 1 is cold (nothing cached),
later turns are warm (the prefix and earlier replies in the pool), and turn 1 of a new
session on the same commit, in a new engine, reads the prefix from the disk tier.

The model is a random Qwen3-MoE of the engine benchmark's shape (hidden 512, 8 layers, 32
experts top-4, fp32) with a 128K window and a byte-level BPE tokenizer trained here on the
repository itself; random weights write nonsense, so the agent mostly gets corrections
("no tool call"), which is fine: the prompt layout and its caching are what is measured.
Without ``--repo`` the repository is a copy of codeagent's own ``agent/`` and ``tools/``
sources (about 50K tokens).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from codeagent.bench.checkpoint import qwen3_config

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def _log(message: str) -> None:
    print(f"[bench codebase] {message}", file=sys.stderr, flush=True)


class TimedClient:
    """The embedded client, recording each call's time to first token and cached tokens."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.context_window = inner.name, inner.context_window
        self.calls: list[dict[str, Any]] = []

    def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[int, bool]:
        return self.inner.count_tokens(messages, tools)

    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], on_token: Any = None
    ) -> Any:
        reply = self.inner.complete(messages, tools, on_token)
        self.calls.append(
            {
                "prompt_tokens": reply.usage.prompt_tokens,
                "cached_tokens": reply.usage.cached_tokens,
                "ttft_s": round(reply.ttft_s, 3),
            }
        )
        _log(f"call {len(self.calls)}: {self.calls[-1]}")
        return reply


def _default_repo(target: Path) -> Path:
    import codeagent.agent

    source = Path(codeagent.agent.__file__).parent.parent
    for part in ("agent", "tools"):
        shutil.copytree(source / part, target / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _git_repo(root: Path) -> None:
    env = {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.com",
        "PATH": "/usr/bin:/bin",
    }
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
        subprocess.run(command, cwd=root, check=True, env=env, capture_output=True)


def _write_tokenizer(folder: Path, corpus_root: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [p.read_text(errors="replace") for p in sorted(corpus_root.rglob("*.py"))]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "bos_token": None, "pad_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def bench_codebase(repo: Path | None = None, turns: int = 3) -> dict[str, Any]:
    try:
        from transformers import Qwen3MoeConfig as RefConfig
        from transformers import Qwen3MoeForCausalLM as RefModel
    except ImportError as err:
        raise RuntimeError(
            "the benchmark builds its random model with transformers: pip install -e '.[test]'"
        ) from err
    from codeagent.agent.loop import Limits
    from codeagent.agent.session import SessionSpec, new_agent
    from codeagent.backend.client import EmbeddedClient
    from codeagent.backend.engine import CacheConfig
    from codeagent.tools.base import ToolEnv

    with tempfile.TemporaryDirectory(prefix="codeagent-bench-codebase-") as tmp_name:
        tmp = Path(tmp_name)
        if repo is None:
            repo = _default_repo(tmp / "repo")
            _git_repo(repo)
        folder = tmp / "model"
        config = qwen3_config(hidden=512, layers=8, experts=32, width=256, vocab=32000)
        config["max_position_embeddings"] = 131072
        torch.manual_seed(0)
        RefModel(RefConfig(**{k: v for k, v in config.items() if k != "architectures"})).save_pretrained(
            folder
        )
        _write_tokenizer(folder, repo, 16000)
        cache = CacheConfig(memory_bytes=3 * 2**30, disk_folder=tmp / "kv")
        sessions = []
        for session in ("first session", "new session, same commit"):
            client = TimedClient(EmbeddedClient(folder, max_new_tokens=16, cache=cache))
            spec = SessionSpec(
                client, ToolEnv(repo), Limits(max_steps=turns if not sessions else 1), repo_map=False
            )
            started = time.perf_counter()
            agent = new_agent(spec, "The tests fail on an empty input; find the cause and fix it.")
            pinned = str(agent.context.pinned[0].get("content") or "")
            if "==> " not in pinned:
                raise RuntimeError("the codebase did not fit half the window; pass a smaller --repo")
            agent.run()
            client.inner.engine.flush()
            client.inner.close()
            sessions.append(
                {"session": session, "calls": client.calls, "wall_s": round(time.perf_counter() - started, 2)}
            )
            _log(f"{session}: {client.calls}")
    first, reopened = sessions
    calls = first["calls"]
    cold = calls[0]["ttft_s"]
    warm = [c["ttft_s"] for c in calls[1:]]
    return {
        "benchmark": "codebase",
        "model": "random Qwen3-MoE, hidden 512, 8 layers, 32 experts top-4, fp32, 128K window",
        "codebase_prompt_tokens": calls[0]["prompt_tokens"],
        "cold_ttft_s": cold,
        "warm_ttft_s": warm,
        "disk_ttft_s": reopened["calls"][0]["ttft_s"],
        "disk_cached_tokens": reopened["calls"][0]["cached_tokens"],
        "sessions": sessions,
        "date": time.strftime("%Y-%m-%d"),
    }
