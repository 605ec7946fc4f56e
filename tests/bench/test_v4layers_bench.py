"""``codeagent bench v4-layers`` on toy widths (``--tiny``): every figure of the JSON a real
number, the targets left undecided, the timed steps giving the model's own logits, and the bytes
a layer reads counted from its storage. No timing is asserted; the real run is by hand
(docs/bench/v4-layers.md)."""

from __future__ import annotations

import math

import pytest
import torch

from codeagent.backend.kernels.dispatch import choose
from codeagent.backend.models.base import SeqSlice
from codeagent.bench.v4layers import decode, model
from codeagent.bench.v4layers.reads import layer_bytes
from codeagent.bench.v4layers.run import Options, bench_v4layers

pytestmark = pytest.mark.skipif(choose("cpu").packed is None, reason="needs the native packed kernels")


@pytest.fixture(scope="module")
def tiny() -> dict:
    options = Options(prompt_tokens=24, steps=2, rounds=2, profile_steps=1, tiny=True)
    return bench_v4layers(options, log=lambda _: None)


def real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_every_figure_is_a_real_number(tiny: dict):
    assert tiny["benchmark"] == "v4-layers" and tiny["model"]["kinds"] == ["sliding", "csa", "hca"]
    assert real(tiny["bandwidth"]["GB_per_s"]) and len(tiny["bandwidth"]["readings_GB_per_s"]) == 3
    assert real(tiny["head"]["seconds"]) and tiny["head"]["bytes"] > 0
    for layer in tiny["layers"]:
        figures = ("decode_ms", "bytes_per_token_MB", "bytes_at_bandwidth_ms", "ratio", "prefill_chunk_ms")
        assert all(real(layer[name]) and layer[name] > 0 for name in figures), layer["kind"]
        assert len(layer["decode_s"]) == 4 and all(real(value) for value in layer["bytes_per_token"].values())
        assert len(layer["ratios_by_round"]) == 2 and all(real(r) and r > 0 for r in layer["ratios_by_round"])
        assert real(layer["ratio_at_highest_bandwidth"]) and layer["ratio_at_highest_bandwidth"] > 0
        assert layer["profile"] and all(real(row["ms_per_step"]) for row in layer["profile"])
    here, server = tiny["estimate"]["this_machine"], tiny["estimate"]["server"]
    assert tiny["estimate"]["label"].startswith("ESTIMATE")
    assert all(real(v) and v > 0 for v in (*here.values(), server["decode_tokens_per_s_at_full_bandwidth"]))
    assert real(tiny["estimate"]["anchor"]["server_estimate_over_anchor_decode"])
    assert all(real(v) and v >= 0 for v in tiny["contention"].values()) and real(tiny["peak_rss_GB"])
    assert list(tiny)[-1] == "targets" and set(tiny["targets"]) == set(tiny["target_notes"])
    assert len(tiny["targets"]) == 4 and all(v is None for v in tiny["targets"].values())


def test_the_timed_steps_give_the_models_own_logits():
    layers = model.build(model.layers_config(("sliding", "csa", "hca"), tiny=True), choose("cpu"))
    prompt = torch.randint(0, layers.config.vocab_size, (30,), generator=torch.Generator().manual_seed(3))
    timed, plain = layers.new_state(), layers.new_state()
    decode.prefill(layers, timed, prompt.tolist())
    layers(prompt, torch.arange(30), [SeqSlice(plain, 30)])
    seconds: list[list[float]] = [[] for _ in layers.layers]
    for token in (5, 9):
        mine = decode.timed_step(layers, timed, [token], seconds)
        theirs = layers(torch.tensor([token]), torch.tensor([plain.length]), [SeqSlice(plain, 1)])[0]
        assert torch.equal(mine, theirs)
    assert [len(s) for s in seconds] == [2, 2, 2]


def test_a_layer_reads_its_weights_its_routed_share_and_its_caches():
    layers = model.build(model.layers_config(("sliding", "csa"), tiny=True), choose("cpu"))
    c = layers.config
    state = layers.new_state()
    decode.prefill(layers, state, list(range(20)))
    for index in (0, 1):
        reads = layer_bytes(layers, index, state.layers[index])
        w13, w2 = layers.w[f"layers.{index}.ffn.w13"], layers.w[f"layers.{index}.ffn.w2"]
        assert (
            reads["routed_experts"] == (w13.nbytes + w2.nbytes) * c.num_experts_per_tok / c.n_routed_experts
        )
        assert reads["total"] == pytest.approx(sum(v for k, v in reads.items() if k != "total"))
    hashed = layer_bytes(layers, 0, state.layers[0])
    assert hashed["router"] == layers.w["layers.0.ffn.gate.weight"].nbytes + c.num_experts_per_tok * 8
    window = (c.sliding_window - 1) * c.head_dim * 2  # bf16 latents: 20 tokens fill the window of 8
    assert hashed["cache"] == window
    csa = layer_bytes(layers, 1, state.layers[1])
    assert csa["cache"] == window + 20 // 4 * (c.head_dim + c.index_head_dim) * 2 and csa["indexer"] > 0
