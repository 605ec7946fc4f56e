"""``codeagent bench grammar``: what constrained decoding buys and what it costs.

- ``valid``: on a tiny random Qwen3-MoE (512-token vocabulary), the share of replies to a
  ``tool_choice: required`` request (one call) that parse, with our own parser, as a call whose
  arguments validate against the tool's schema (jsonschema), without and with constraints,
  over five schemas (enum, integer, nested object, array, required strings) and N seeds;
  sampled at temperature 1, 96 new tokens at most. Invalid replies cut by that limit are
  counted apart: the random model may wander in a string or an open-ended object until then,
  which a grammar allows and no mask can prevent.
- ``cost``: on the engine bench's model (random Qwen3-MoE, hidden 512, 8 layers, 32 experts
  top-4, float32) with a 32000-token vocabulary, under the ``auto`` grammar of the same tools,
  batch 1 and 8: the time one decode step takes free, the time filling the step's masks takes
  (replayed along the generated tokens, the fill alone, each row in turn as the runner does on
  a CPU), its share of the step, and the step measured end to end with the fill after the
  forward pass (the CPU default) and overlapped with it on a worker thread (the GPU default);
  step times are the best of three interleaved runs.
- ``vocab150k``: the fill alone per token on a 150K vocabulary (Qwen3's size), batch 1 and 8.
- ``engines``: llguidance against XGrammar where XGrammar is installed (``grammar_engines.py``).

Timings are of this machine at the time, whatever else runs on it: the JSON records the load
average before and after.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jsonschema

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.chat.prompt import chat_prompt
from codeagent.backend.engine import Request
from codeagent.backend.grammar.matcher import StepMasks
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.runtime import RuntimeConfig, build_engine, chat_model, load, open_runtime
from codeagent.bench.grammar_engines import compare_engines
from codeagent.bench.grammar_vocab import model_folder
from codeagent.bench.machine import machine

SCHEMAS: dict[str, dict[str, Any]] = {
    "enum": {"type": "object", "properties": {"mode": {"enum": ["read", "write"]}}, "required": ["mode"]},
    "integer": {
        "type": "object",
        "properties": {"line": {"type": "integer", "minimum": 1}},
        "required": ["line"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "where": {
                "type": "object",
                "properties": {"deep": {"type": "boolean"}, "depth": {"enum": [1, 2, 3]}},
                "required": ["deep", "depth"],
                "additionalProperties": False,
            }
        },
        "required": ["where"],
    },
    "array": {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
        "required": ["tags"],
    },
    "required": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "maxLength": 12},
            "count": {"type": "integer", "maximum": 9},
        },
        "required": ["path", "count"],
    },
}
TOOLS = [{"type": "function", "function": {"name": n, "parameters": s}} for n, s in SCHEMAS.items()]
ASK = [{"role": "user", "content": "Read the file and fix the bug."}]


def _log(message: str) -> None:
    print(f"[bench grammar] {message}", file=sys.stderr, flush=True)


def valid_call(message: Any, schema: dict[str, Any]) -> bool:
    if message.malformed or not message.tool_calls:
        return False
    try:
        for call in message.tool_calls:
            jsonschema.validate(json.loads(call["function"]["arguments"]), schema)
    except (jsonschema.ValidationError, json.JSONDecodeError):
        return False
    return True


def _tally(runtime: Any, prompt: Any, schema: dict[str, Any], seeds: int) -> tuple[int, int]:
    """(valid calls, invalid replies that ran into max_tokens) over ``seeds`` sampled replies."""
    good = cut = 0
    for seed in range(seeds):
        generation = runtime.generate(prompt, SamplingParams(temperature=1.0, seed=seed, max_tokens=96))
        for _ in generation:
            pass
        valid = valid_call(generation.message(), schema)
        good += valid
        cut += not valid and generation.result.finish_reason == "length"
    return good, cut


def valid_share(folder: Path, seeds: int) -> dict[str, Any]:
    runtime = open_runtime(
        folder, RuntimeConfig(device="cpu", dtype="float32", cache=CacheConfig(num_blocks=512))
    )
    shares: dict[str, Any] = {}
    try:
        for constrain in (False, True):
            runtime.model.constrain = constrain
            per_schema = {}
            for name, schema in SCHEMAS.items():
                tools = [tool for tool in TOOLS if tool["function"]["name"] == name]
                prompt = chat_prompt(runtime.model, ASK, tools, "required", parallel_calls=False)
                good, cut = _tally(runtime, prompt, schema, seeds)
                per_schema[name] = {"valid": good / seeds, "cut_by_max_tokens": cut / seeds}
            key = "constrained" if constrain else "free"
            overall = statistics.mean(row["valid"] for row in per_schema.values())
            cut_share = statistics.mean(row["cut_by_max_tokens"] for row in per_schema.values())
            shares[key] = {"valid": overall, "invalid_cut_by_max_tokens": cut_share, "per_schema": per_schema}
            _log(f"valid calls, {key}: {overall:.0%} ({cut_share:.0%} of replies cut by max_tokens)")
    finally:
        runtime.close()
    return {"seeds": seeds, "max_tokens": 96, "temperature": 1.0, **shares}


def _decode_step_s(engine: Any, requests: list[Request]) -> tuple[float, list[list[int]]]:
    results = engine.generate(requests)
    steps = [max(len(r.token_ids) - 1, 1) for r in results]
    return statistics.mean(r.decode_s / n for r, n in zip(results, steps, strict=True)), [
        r.token_ids for r in results
    ]


def fill_s_per_step(grammar: Any, replies: list[list[int]]) -> float:
    """The fill alone: masks of every sequence at each step, replayed along the sampled tokens."""
    matchers = [grammar.matcher() for _ in replies]
    spent, steps = 0.0, 0
    for step in range(max(len(r) for r in replies)):
        rows = [(i, m) for i, (m, r) in enumerate(zip(matchers, replies, strict=True)) if step < len(r)]
        started = time.perf_counter()
        StepMasks.start(rows, overlap=False)
        spent += time.perf_counter() - started
        steps += 1
        for (_, matcher), reply in zip(rows, [r for r in replies if step < len(r)], strict=True):
            matcher.consume(reply[step])
    return spent / steps


ROUNDS = 3  # each variant's step time is its best of this many interleaved runs (a shared host's noise)


def mask_cost(folder: Path, steps: int) -> dict[str, Any]:
    model = chat_model(folder)
    engine = build_engine(
        load(folder, "float32", "cpu"), model.tokenizer.eos_token_ids, CacheConfig(num_blocks=512)
    )
    prompt = chat_prompt(model, ASK, TOOLS)
    grammar = model.grammar(prompt.grammar)
    rows = []
    try:
        for batch in (1, 8):

            def run(grammar_of: Any, overlap: bool = False, b: int = batch) -> tuple[float, list[list[int]]]:
                engine.runner.grammar_overlap = overlap
                params = [
                    SamplingParams(temperature=1.0, seed=s, max_tokens=steps, grammar=grammar_of)
                    for s in range(b)
                ]
                return _decode_step_s(engine, [Request(prompt.ids, p) for p in params])

            run(grammar)  # warm: the prompt cached, the grammar's lexer built
            times: dict[str, list[float]] = {"free": [], "in_turn": [], "overlapped": []}
            for _ in range(ROUNDS):
                times["free"].append(run(None)[0])
                step, replies = run(grammar)
                times["in_turn"].append(step)
                times["overlapped"].append(run(grammar, overlap=True)[0])
            free = min(times["free"])
            fill = fill_s_per_step(grammar, replies)
            rows.append(
                {
                    "batch": batch,
                    "decode_step_ms_free": round(free * 1e3, 3),
                    "mask_fill_ms_per_step": round(fill * 1e3, 4),
                    "mask_fill_share_of_step": round(fill / free, 4),
                    "decode_step_ms_constrained_fill_after_forward": round(min(times["in_turn"]) * 1e3, 3),
                    "decode_step_ms_constrained_fill_overlapped": round(min(times["overlapped"]) * 1e3, 3),
                }
            )
            _log(f"batch {batch}: step {free * 1e3:.1f} ms, fill {fill * 1e3:.3f} ms ({fill / free:.2%})")
    finally:
        engine.close()
    return {
        "model": "random Qwen3-MoE, hidden 512, 8 layers, 32 experts top-4, float32, vocab 32000",
        "new_tokens": steps,
        "rounds": ROUNDS,
        "rows": rows,
    }


def vocab_cost(folder: Path) -> dict[str, Any]:
    """The fill alone on a big vocabulary: replayed along tokens of a valid reply (no model)."""
    model = chat_model(folder)
    prompt = chat_prompt(model, ASK, TOOLS)
    grammar = model.grammar(prompt.grammar)
    text = "Let me look.\n\n<tool_call>\n<function=required>\n<parameter=path>\nsrc/a.py\n</parameter>\n<parameter=count>\n3\n</parameter>\n</function>\n</tool_call>"
    reply = model.tokenizer.encode(text)
    return {
        "vocab": model.tokenizer.vocab_size,
        "reply_tokens": len(reply),
        "fill_ms_per_step": {str(b): round(fill_s_per_step(grammar, [reply] * b) * 1e3, 4) for b in (1, 8)},
    }


def bench_grammar(seeds: int = 20, steps: int = 48, big_vocab: int = 151_665) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="codeagent-bench-grammar-") as tmp:
        root = Path(tmp)
        _log("tiny model, 512-token vocabulary")
        tiny = model_folder(root / "tiny", 512, "tiny")
        valid = valid_share(tiny, seeds)
        _log("the engine bench's model, 32000-token vocabulary")
        cost = mask_cost(model_folder(root / "engine", 32000, "engine"), steps)
        _log(f"a {big_vocab}-token vocabulary (trained here: about two minutes)")
        big = model_folder(root / "big", big_vocab, "tiny")
        vocab150k = vocab_cost(big)
        engines = {
            "tiny": compare_engines(tiny / "tokenizer.json"),
            "150k": compare_engines(big / "tokenizer.json"),
        }
    return {
        "benchmark": "grammar",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "valid": valid,
        "cost": cost,
        "vocab150k": vocab150k,
        "engines": engines,
    }
