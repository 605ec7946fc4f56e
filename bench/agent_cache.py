"""Prompt-cache reuse per request when the real Claude Code or Codex drives ``codeagent serve``.

``codeagent bench agent-cache --client claude --turns 5`` (or ``python -m
codeagent.bench.agent_cache`` with the same flags: ``agent_cache_arguments.py``) writes a random Qwen3-MoE
(a few MB; its tokenizer a byte-level BPE trained here on codeagent's own source and docs,
so prompts of English and code cut into realistic pieces), serves it on 127.0.0.1 with the
real engine and its prefix cache (the server ``codeagent serve`` runs, built in this process
so every prompt can be recorded), and runs the client for ``--turns`` turns: ``claude -p``
then ``--continue``, or ``codex exec`` then ``exec resume --last`` (``bench.agent_clients``;
with ``--new-sessions`` a new session every turn), in a folder holding one file; with
``--git`` a git repository in which that file is edited between turns, as a user would
(clients put the repository's state in their prompts).

Each request the engine took becomes a row: the turn it came in, whether tools were listed
(an agent request, not a title or topic side request), its prompt tokens, the tokens read from
the prefix cache, and where it first differs from the previous request of the same kind
(its prompt and the reply generated for it, which the next one should extend): the token
position and the text on either side (before, then after the change). Random weights write
garbage and rarely end a turn, so the wrapper that records requests ends every reply after
``--reply-tokens`` tokens with the end-of-turn id, as a model that finished would (the engine
computed all but that last id; a reply cut by ``max_tokens`` instead would make Claude Code
ask again to continue). Every turn ends with text, which is all the cache needs.

Limits: one client run per call; the timing is the CPU's, not a GPU's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codeagent.backend.generation import Service, TokenStream
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.sequence import Result
from codeagent.bench.agent_cache_arguments import arguments

PROMPTS = [
    "What is in notes.txt? Answer in one line.",
    "Now say what the code word in it is for.",
    "Thanks. Anything else worth knowing in this folder?",
    "Summarise our conversation in one sentence.",
    "Last one: say goodbye.",
    "And once more, briefly.",
]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
TOOL_LIST = "\n<tools>\n"  # how the chat template opens its list of tools


class EndedStream:
    """An engine stream that ends its reply after ``limit`` tokens with an end-of-turn id, as a
    model that finished would (a cut by ``max_tokens`` would make clients retry or continue)."""

    def __init__(self, stream: TokenStream, limit: int, end: int) -> None:
        self.stream, self.limit, self.end = stream, limit, end
        self.sent: list[int] = []
        self.result: Result | None = None

    def __iter__(self) -> Iterator[int]:
        for token in self.stream:
            self.sent.append(token)
            yield token
            if token == self.end or len(self.sent) == self.limit:
                break
        if self.sent and self.sent[-1] != self.end:
            self.sent.append(self.end)
            yield self.end
        self.stream.cancel()
        for _ in self.stream:  # drained: the engine's account of the sequence arrives
            pass
        engine = self.stream.result
        assert engine is not None
        self.result = replace(engine, token_ids=list(self.sent), finish_reason="stop")

    def cancel(self) -> None:
        self.stream.cancel()


@dataclass
class Recorded:
    turn: int
    ids: list[int]
    stream: EndedStream


class Recorder:
    """The engine service, recording every prompt and ending every reply after a few tokens."""

    def __init__(self, service: Service, reply_tokens: int, end: int) -> None:
        self.service, self.reply_tokens, self.end = service, reply_tokens, end
        self.requests: list[Recorded] = []
        self.turn = 0

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> EndedStream:
        stream = EndedStream(self.service.submit(prompt_ids, params), self.reply_tokens, self.end)
        self.requests.append(Recorded(self.turn, list(prompt_ids), stream))
        return stream


def write_model(folder: Path, vocab: int = 16384) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from codeagent.bench.checkpoint import qwen3_config, write_checkpoint

    config = qwen3_config(hidden=128, layers=2, experts=8, width=64, vocab=vocab)
    config["max_position_embeddings"] = 262144
    write_checkpoint(folder, config)
    root = Path(__file__).resolve().parents[1]
    texts = [p.read_text(errors="replace") for ext in ("py", "md") for p in sorted(root.rglob(f"*.{ext}"))]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    special = {"eos_token": "<|im_end|>", "bos_token": None, "pad_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(special))
    return folder


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def rows(requests: list[Recorded], decode: Callable[[list[int]], str]) -> list[dict[str, Any]]:
    """One row per request; the difference from the previous request of the same kind."""
    out: list[dict[str, Any]] = []
    last: dict[bool, list[int]] = {}
    for number, request in enumerate(requests, 1):
        result = request.stream.result
        assert result is not None
        text = decode(request.ids)
        tools = TOOL_LIST in text
        row = {
            "request": number,
            "turn": request.turn,
            "tools": tools,
            "prompt_tokens": len(request.ids),
            "cached_tokens": result.cached_tokens,
            "reply_tokens": len(result.token_ids),
            "hit_rate": round(result.cached_tokens / max(1, len(request.ids)), 4),
            "prefill_s": round(result.prefill_s, 2),
        }
        before = last.get(tools)
        if before is not None:
            at = _common(before, request.ids)
            row["first_difference"] = at
            row["extends_previous"] = at == len(before)
            if at < len(before):
                row["was"] = decode(before[max(0, at - 8) : at + 12])
                row["now"] = decode(request.ids[max(0, at - 8) : at + 12])
        out.append(row)
        last[tools] = request.ids + list(result.token_ids)
    return out


def _code(text: str) -> str:
    """Text as a Markdown table's inline code: newlines shown as ``\\n``, bars escaped."""
    return "`" + text.replace("\n", "\\n").replace("|", "\\|") + "`"


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| request | turn | tools | prompt tokens | cached | hit rate | prefill s | first difference | was -> now |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        where = "-" if "first_difference" not in r else f"{r['first_difference']:,}"
        if r.get("extends_previous"):
            where += " (extends the last)"
        change = f"{_code(r['was'])} -> {_code(r['now'])}" if "was" in r else ""
        lines.append(
            f"| {r['request']} | {r['turn']} | {'yes' if r['tools'] else 'no'} | {r['prompt_tokens']:,} "
            f"| {r['cached_tokens']:,} | {r['hit_rate']:.1%} | {r['prefill_s']:.2f} | {where} | {change} |"
        )
    return "\n".join(lines)


def _workdir(work: Path, git: bool) -> Path:
    work.mkdir()
    (work / "notes.txt").write_text("The code word is PLUM-7431. It opens the shed.\n")
    if git:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work.parent), "GIT_CONFIG_NOSYSTEM": "1"}
        names = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        for command in (["init", "-q"], ["add", "notes.txt"], [*names, "commit", "-qm", "notes"]):
            subprocess.run(["git", *command], cwd=work, env=env, check=True, capture_output=True)
    return work


def run(
    client: str,
    turns: int,
    reply_tokens: int,
    clients_dir: Path | None,
    git: bool = False,
    extra_env: dict[str, str] | None = None,
    new_sessions: bool = False,
) -> dict[str, Any]:
    from codeagent.backend.cache.allocator import CacheConfig
    from codeagent.backend.runtime import RuntimeConfig, open_runtime
    from codeagent.backend.serving.server import OpenAIServer, serve
    from codeagent.bench.agent_clients import Claude, Codex, install, versions

    bin_dir = install(clients_dir)
    with tempfile.TemporaryDirectory(prefix="codeagent-agent-cache-") as name:
        tmp = Path(name)
        cache = CacheConfig(memory_bytes=2 * 2**30)
        runtime = open_runtime(write_model(tmp / "model"), RuntimeConfig("float32", "cpu", cache, "tiny"))
        extra_env = extra_env or {}
        end = min(runtime.model.tokenizer.eos_token_ids)
        recorder = Recorder(runtime.service, reply_tokens, end)
        server = OpenAIServer(("127.0.0.1", 0), runtime.model, recorder)
        serve(server)
        work = _workdir(tmp / "work", git)
        home = tmp / "home"
        if client == "claude":
            url = server.url.removesuffix("/v1")
            agent: Claude | Codex = Claude(bin_dir, home, work, url, "tiny", extra_env=extra_env)
        else:
            agent = Codex(bin_dir, home, work, server.url, "tiny", extra_env=extra_env)
        exits = []
        try:
            for turn, prompt in enumerate(PROMPTS[:turns], 1):
                recorder.turn = turn
                if git and turn > 1:  # the user edits a file between turns
                    with (work / "notes.txt").open("a") as notes:
                        notes.write(f"Edited before turn {turn}.\n")
                done = agent.turn(prompt, resume=not new_sessions)
                exits.append(done.returncode)
                print(f"turn {turn}: exit {done.returncode}", file=sys.stderr, flush=True)
        finally:
            server.shutdown()
            server.server_close()
            runtime.close()
        table = rows(recorder.requests, runtime.model.tokenizer.decode)
    return {
        "client": client,
        "git": git,
        "env": extra_env,
        "new_sessions": new_sessions,
        "versions": versions(bin_dir),
        "exits": exits,
        "rows": table,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codeagent.bench.agent_cache", description=__doc__)
    arguments(parser)
    parser.add_argument("--output", type=Path, help="JSON results file")
    args = parser.parse_args(argv)
    extra_env = dict(item.split("=", 1) for item in args.env)
    result = run(
        args.client, args.turns, args.reply_tokens, args.clients_dir, args.git, extra_env, args.new_sessions
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.client} {result['versions']} exits {result['exits']}")
    print(markdown(result["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
