"""The transformers side of ``codeagent bench gpu``: the same configuration, random, on the same device.

transformers (a test and benchmark dependency, imported here only) builds the family's
model from the configuration under the device and dtype (``_from_config``: its own
random initialisation), with DeepSeek-V4's hash-routing tables filled with random
experts as ours are. Its attention and experts implementations are its defaults for the
device (sdpa and grouped_mm where they apply; V4 has eager attention only) and are
recorded. Every forward keeps only the last position's logits.

- decode (B, C): B sequences of C distinct tokens prefilled in chunks of
  ``--reference-chunk`` through a ``DynamicCache``, then ``decode_tokens - 1`` greedy
  steps of one token each, timed (one device sync at the end). No prefix sharing:
  cells with B x C above ``--reference-max-tokens`` are skipped, as are cells that run
  out of device memory, each with the reason.
- prefill N: one prompt of N tokens in chunks; time to the last chunk's logits.
- prefix: the prefix in chunks, then the follow-up as one chunk. Cold is the whole; warm
  is the follow-up's forward alone on the cache kept from the prefix (transformers has
  no prefix cache across requests: a caller would have to keep it, as here).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import torch

from codeagent.bench.gpu.plan import Log, Plan, release, tokens
from codeagent.bench.random_weights import fill_random_


def reference_model(plan: Plan) -> Any:
    import transformers

    release_only = ("architectures", "model_type", "rope_scaling", "compress_ratios", "num_hash_layers")
    raw = {k: v for k, v in plan.raw.items() if k not in release_only}
    if "compress_ratios" in plan.raw:  # V4 in transformers' spelling: explicit schedules and rates
        raw.update(
            layer_types=plan.config.layer_types,
            mlp_layer_types=plan.config.mlp_layer_types,
            compress_rates=plan.config.compress_rates,
        )
    if "rope_scaling" in plan.raw:
        yarn = dict(plan.raw["rope_scaling"])
        raw["rope_parameters"] = {"rope_type": yarn.pop("type", "yarn"), **yarn}
    architecture = plan.raw["architectures"][0]
    config_class = getattr(transformers, architecture.replace("ForCausalLM", "Config"))
    model_class = getattr(transformers, architecture)
    config = config_class(**raw, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    with torch.device(plan.device):
        model = model_class._from_config(config, dtype=plan.dtype).eval()
    generator = torch.Generator(device=plan.device)
    generator.manual_seed(plan.seed + 1)
    experts = plan.raw.get("n_routed_experts", 0)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("tid2eid"):  # zero-initialised: every token would pick expert 0
                fill_random_(name, buffer, generator, experts)
    return model


def measure(plan: Plan, log: Log) -> dict[str, Any]:
    import transformers

    started = time.perf_counter()
    model = reference_model(plan)
    _sync(plan.device)
    build_s = time.perf_counter() - started
    log(f"transformers: built {plan.name} in {build_s:.1f} s")
    runner = _Runner(model, plan)
    out: dict[str, Any] = {
        "build_s": round(build_s, 2),
        "version": transformers.__version__,
        "attention": getattr(model.config, "_attn_implementation", None),
        "experts": getattr(model.config, "_experts_implementation", None),
        "chunk": plan.reference_chunk,
    }
    runner.prefill(torch.tensor([tokens(min(64, plan.reference_chunk), 5, runner.vocab)]))  # warm-up
    if "decode" in plan.scenarios:
        out["decode"] = [
            runner.guarded(log, {"batch": b, "context": c}, runner.decode, b, c)
            for c in plan.contexts
            for b in plan.batches
        ]
    if "prefill" in plan.scenarios:
        out["prefill"] = [runner.guarded(log, {"tokens": n}, runner.prefill_row, n) for n in plan.prefills]
    if "prefix" in plan.scenarios:
        out["prefix"] = runner.guarded(log, {}, runner.prefix)
    del runner, model
    release(plan.device)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Runner:
    def __init__(self, model: Any, plan: Plan) -> None:
        from transformers import DynamicCache

        self.model, self.plan, self.cache_class = model, plan, DynamicCache
        self.vocab = plan.raw["vocab_size"]
        # transformers 5.24 renamed past_key_values to cache
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"

    def guarded(self, log: Log, keys: dict[str, int], fn: Any, *args: int) -> dict[str, Any]:
        """One cell; a cell that runs out of device memory is reported as skipped."""
        try:
            row = fn(*args)
        except torch.OutOfMemoryError:
            row = {**keys, "skipped": "out of device memory"}
        release(self.plan.device)
        log(f"transformers: {row}")
        return row

    def forward(self, ids: torch.Tensor, cache: Any) -> torch.Tensor:
        with torch.no_grad():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self.cache_kw: cache})
        return out.logits[:, -1]

    def prefill(self, ids: torch.Tensor, cache: Any = None) -> tuple[Any, torch.Tensor]:
        """ids [B, N] in chunks; the cache and the last position's logits [B, vocab]."""
        ids = ids.to(self.plan.device)
        cache = cache if cache is not None else self.cache_class(config=self.model.config)
        logits = None
        for start in range(0, ids.shape[1], self.plan.reference_chunk):
            logits = self.forward(ids[:, start : start + self.plan.reference_chunk], cache)
        assert logits is not None
        return cache, logits

    def decode(self, batch: int, context: int) -> dict[str, Any]:
        row: dict[str, Any] = {"batch": batch, "context": context}
        if batch * (context + self.plan.decode_tokens) > self.plan.reference_max_tokens:
            row["skipped"] = f"B x C above --reference-max-tokens {self.plan.reference_max_tokens}"
            return row
        ids = torch.tensor([tokens(context, 40_000 + 97 * context + i, self.vocab) for i in range(batch)])
        cache, logits = self.prefill(ids)
        steps = self.plan.decode_tokens - 1
        _sync(self.plan.device)
        started = time.perf_counter()
        for _ in range(steps):
            logits = self.forward(logits.argmax(-1, keepdim=True), cache)
        _sync(self.plan.device)
        seconds = time.perf_counter() - started
        row.update(tokens_per_s=round(batch * steps / seconds, 2), step_ms=round(1000 * seconds / steps, 3))
        return row

    def prefill_row(self, n: int) -> dict[str, Any]:
        if n > self.plan.reference_max_tokens:
            return {"tokens": n, "skipped": f"above --reference-max-tokens {self.plan.reference_max_tokens}"}
        ids = torch.tensor([tokens(n, 50_000 + n, self.vocab)])
        _sync(self.plan.device)
        started = time.perf_counter()
        self.prefill(ids)
        _sync(self.plan.device)
        seconds = time.perf_counter() - started
        return {"tokens": n, "seconds": round(seconds, 4), "tokens_per_s": round(n / seconds, 1)}

    def prefix(self) -> dict[str, Any]:
        n, m = self.plan.prefix, self.plan.follow_up
        if n + m > self.plan.reference_max_tokens:
            return {"skipped": f"above --reference-max-tokens {self.plan.reference_max_tokens}"}
        _sync(self.plan.device)
        started = time.perf_counter()
        cache, _ = self.prefill(torch.tensor([tokens(n, 60_000, self.vocab)]))
        _sync(self.plan.device)
        between = time.perf_counter()
        self.prefill(torch.tensor([tokens(m, 60_001, self.vocab)]), cache)
        _sync(self.plan.device)
        done = time.perf_counter()
        return {"cold_ttft_s": round(done - started, 4), "warm_ttft_s": round(done - between, 4)}
