"""llguidance against XGrammar: mask time per token on one vocabulary, along a valid reply.

Two grammars, each engine in its own idiom: a JSON schema (enum, bounded integer, nested
object, array of strings, required keys), and free text that may end in a ``<tool_call>``
block holding a JSON call (llguidance: Lark with a negated text lexeme and ``%json``;
XGrammar: a structural tag triggered by ``<tool_call>``). Each engine fills one mask per
token of the reply, then consumes the token; the JSON gives the compile time and the mean,
median and worst mask time. XGrammar is not a dependency of ours: where it is not importable
its rows say so (``pip install xgrammar`` next to the project to compare).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llguidance
import numpy

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "mode": {"enum": ["read", "write", "append"]},
        "count": {"type": "integer", "minimum": 0},
        "options": {
            "type": "object",
            "properties": {"recursive": {"type": "boolean"}, "depth": {"type": "integer"}},
            "required": ["recursive"],
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["path", "mode", "count", "options", "tags"],
    "additionalProperties": False,
}
VALUE = {
    "path": "src/codeagent/backend/engine.py",
    "mode": "write",
    "count": 12,
    "options": {"recursive": True, "depth": 3},
    "tags": ["alpha", "beta gamma", "delta"],
}
CALL = {
    "type": "object",
    "properties": {"name": {"const": "edit"}, "arguments": SCHEMA},
    "required": ["name", "arguments"],
}
PREFIX = "I will read the file first, then fix the bug.\n\n<tool_call>\n"


def _stats(compile_s: float, samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "compile_ms": round(compile_s * 1e3, 2),
        "mask_mean_us": round(statistics.mean(ordered) * 1e6, 1),
        "mask_p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "mask_max_us": round(ordered[-1] * 1e6, 1),
    }


def _llguidance(
    path: Path, eos: int, ids: dict[str, list[int]], single: int | None, close: int | None
) -> dict[str, Any]:
    tokenizer = llguidance.LLTokenizer(path.read_text(encoding="utf-8"), eos_token=eos)
    opener = f"<[{single}]>" if single is not None else '"<tool_call>"'
    closer = f"<[{close}]>" if close is not None else '"</tool_call>"'
    text = "/(?s:.+)/ & ~/(?s:.*)<tool_call>(?s:.*)/"
    lark = f'start: TEXT? {opener} "\\n" %json{json.dumps(CALL)} "\\n" {closer}\nTEXT: {text}\n'
    if single is None:
        lark = f'start: pre "\\n" %json{json.dumps(CALL)} "\\n" {closer}\npre[lazy]: /(?s:.*)<tool_call>/\n'
    grammars = {
        "json": llguidance.LLMatcher.grammar_from_json_schema(SCHEMA),
        "tool": llguidance.LLMatcher.grammar_from_lark(lark),
    }
    out = {}
    for name, grammar in grammars.items():
        started = time.perf_counter()
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        compile_s = time.perf_counter() - started
        mask = numpy.zeros((1, (tokenizer.vocab_size + 31) // 32), dtype=numpy.int32)
        samples = _replay(
            ids[name],
            lambda m=matcher, b=mask: m.unsafe_compute_mask_ptr(b.ctypes.data, b.nbytes),
            matcher.consume_token,
        )
        out[name] = _stats(compile_s, samples)
    return out


def _replay(ids: list[int], fill: Callable[[], Any], consume: Callable[[int], bool]) -> list[float]:
    samples = []
    for token in ids:
        started = time.perf_counter()
        fill()
        samples.append(time.perf_counter() - started)
        if not consume(token):
            raise RuntimeError(f"the reply's token {token} broke the grammar")
    return samples


def _xgrammar(path: Path, eos: int, ids: dict[str, list[int]]) -> dict[str, Any]:
    try:
        import xgrammar
    except ImportError:
        return {"error": "xgrammar is not installed here"}
    from tokenizers import Tokenizer

    inner = Tokenizer.from_file(str(path))
    vocab = [""] * inner.get_vocab_size()
    for text, index in inner.get_vocab().items():
        vocab[index] = text
    info = xgrammar.TokenizerInfo(
        vocab, xgrammar.VocabType.BYTE_LEVEL, vocab_size=len(vocab), stop_token_ids=[eos]
    )
    compiler = xgrammar.GrammarCompiler(info, max_threads=1)
    tag = xgrammar.StructuralTagItem(begin="<tool_call>\n", schema=json.dumps(CALL), end="\n</tool_call>")
    builds = {
        "json": lambda: compiler.compile_json_schema(json.dumps(SCHEMA), any_whitespace=False),
        "tool": lambda: compiler.compile_structural_tag([tag], ["<tool_call>"]),
    }
    out = {}
    for name, build in builds.items():
        started = time.perf_counter()
        matcher = xgrammar.GrammarMatcher(build())
        compile_s = time.perf_counter() - started
        mask = xgrammar.allocate_token_bitmask(1, len(vocab))
        out[name] = _stats(
            compile_s,
            _replay(
                ids[name], lambda m=matcher, b=mask: m.fill_next_token_bitmask(b, 0), matcher.accept_token
            ),
        )
    return out


def compare_engines(path: Path) -> dict[str, Any]:
    from tokenizers import Tokenizer

    inner = Tokenizer.from_file(str(path))
    eos = inner.token_to_id("<|im_end|>")
    single, close = inner.token_to_id("<tool_call>"), inner.token_to_id("</tool_call>")
    added = set(inner.get_added_tokens_decoder())
    single = single if single in added else None
    close = close if close in added else None
    call = json.dumps({"name": "edit", "arguments": VALUE})
    tool_ids = inner.encode(PREFIX + call + "\n").ids + (
        inner.encode("</tool_call>").ids if close is None else [close]
    )
    ids = {"json": inner.encode(json.dumps(VALUE)).ids, "tool": tool_ids}
    result: dict[str, Any] = {"vocab": inner.get_vocab_size(), "tokens": {k: len(v) for k, v in ids.items()}}
    result["llguidance"] = _llguidance(path, eos, ids, single, close)
    result["xgrammar"] = _xgrammar(path, eos, ids)
    return result
