"""DeepSeek-V4's routed experts in host memory beside the device (``--cpu-experts``), checked
with both homes on the CPU: a tiny random V4 (hash-routed and learned layers) generates the
one-home model's greedy tokens with none, some and all of its routed experts in host memory,
dense (float32, bfloat16) or packed FP4 as a release checkpoint gives them; the host's
experts are separate tensors allocated in host memory; the routing is counted (hash-routed
layers included) and a saved placement is used at the next load; ``codeagent generate
--cpu-experts`` runs end to end; ``--cpu-experts auto`` counts packed experts' real bytes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from codeagent.backend.kernels import native
from codeagent.backend.layers.offload import least_used
from codeagent.backend.loader import LoadError, load_model
from codeagent.backend.packed_weights import PackedExperts

BACKEND_TESTS = Path(__file__).parent
EXPERTS, LAYERS = 8, 5


def _v4_tests():
    spec = importlib.util.spec_from_file_location(
        "offload_uses_test_deepseek_v4", BACKEND_TESTS / "test_deepseek_v4.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


v4 = _v4_tests()
PROMPTS = [v4.prompt(24), v4.prompt(7, 3), v4.prompt(41, 4)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """The tiny V4 in transformers' spelling, float32 (its experts load dense)."""
    return v4.save(tmp_path_factory.mktemp("offload_v4"), v4.reference_model())


@pytest.fixture(scope="module")
def release(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model as the release ships it: FP4 routed experts, FP8 projections, and a config
    that declares it (so the experts are never allocated in full precision)."""
    folder = tmp_path_factory.mktemp("offload_v4_release")
    config = dict(tiny.config, expert_dtype="fp4", quantization_config={"fmt": "e4m3", "scale_fmt": "ue8m0"})
    (folder / "config.json").write_text(json.dumps(config))
    save_file(v4.release_quantized(tiny.tensors)[0], folder / "model.safetensors")
    return folder


def routed(model, layer: int) -> tuple[object, object]:
    return model.w[f"layers.{layer}.ffn.w13"], model.w[f"layers.{layer}.ffn.w2"]


def hosted(model, layer: int) -> tuple[object, object]:
    return model.w[f"layers.{layer}.ffn.host_w13"], model.w[f"layers.{layer}.ffn.host_w2"]


def nbytes(storage) -> int:
    return storage.nbytes if isinstance(storage, PackedExperts) else storage.numel() * storage.element_size()


def device_of(storage) -> torch.device:
    return storage.weight.device if isinstance(storage, PackedExperts) else storage.device


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dense_experts_in_host_memory_give_the_same_tokens(tiny, dtype) -> None:
    one_home = load_model(tiny.folder, dtype).model
    expected = v4.greedy(one_home, PROMPTS, 10)
    for count in (0, 3, EXPERTS):
        model = load_model(tiny.folder, dtype, cpu_experts=count).model
        assert v4.greedy(model, PROMPTS, 10) == expected, count
        for i, layer in enumerate(model.layers):
            if not count:
                assert layer.ffn.homes is None and f"layers.{i}.ffn.host_w13" not in model.w
                continue
            (w13, w2), (host_w13, host_w2) = routed(model, i), hosted(model, i)
            assert layer.ffn.homes.on_host == count and w13.shape[0] == w2.shape[0] == EXPERTS - count
            assert host_w13.dtype == dtype and device_of(host_w13) == torch.device("cpu")
            # separate storage in each home, together the one-home layer's bytes and no more
            assert (
                host_w13.untyped_storage().data_ptr() != w13.untyped_storage().data_ptr() or not w13.numel()
            )
            whole = routed(one_home, i)
            assert nbytes(w13) + nbytes(host_w13) == nbytes(whole[0])
            assert nbytes(w2) + nbytes(host_w2) == nbytes(whole[1])
            assert nbytes(host_w13) == nbytes(whole[0]) * count // EXPERTS
            # the highest ids live in host memory (no routing counts yet), each expert's matrices in its home
            assert [e for e in range(EXPERTS) if bool(layer.ffn.homes.home[e])] == least_used(
                None, EXPERTS, count
            )
            first_host = EXPERTS - count
            assert torch.equal(host_w13[0], whole[0][first_host]) and torch.equal(host_w2[-1], whole[1][-1])
            if count < EXPERTS:
                assert torch.equal(w13[0], whole[0][0])


@pytest.mark.usefixtures("fp4_float_route")
def test_packed_fp4_experts_in_host_memory_give_the_same_tokens(release) -> None:
    one_home = load_model(release).model
    assert isinstance(routed(one_home, 2)[0], PackedExperts)
    expected = v4.greedy(one_home, PROMPTS, 10)
    for count in (3, EXPERTS):
        model = load_model(release, cpu_experts=count).model
        homes = model.layers[0].ffn.homes
        calls = native.calls["moe_packed"]
        assert v4.greedy(model, PROMPTS, 10) == expected, count
        if homes.host_kernels.packed is not None:  # the host's pairs ran the native packed MoE kernel
            assert native.calls["moe_packed"] > calls
        for i in range(LAYERS):
            (host_w13, host_w2), whole = hosted(model, i), routed(one_home, i)
            assert isinstance(host_w13, PackedExperts) and isinstance(host_w2, PackedExperts)
            assert host_w13.format == "fp4" and device_of(host_w13) == torch.device("cpu")
            assert host_w13.shape[0] == count and nbytes(host_w13) == nbytes(whole[0]) * count // EXPERTS
            assert torch.equal(host_w13.weight[0], whole[0].weight[EXPERTS - count])
            assert torch.equal(host_w2.scale[-1], whole[1].scale[-1])
            w13 = routed(model, i)[0]
            assert w13.shape[0] == EXPERTS - count and not (
                w13.is_meta if isinstance(w13, torch.Tensor) else False
            )


def test_too_many_experts_and_packing_are_refused(tiny) -> None:
    from codeagent.backend.packing import PackError, pack

    with pytest.raises(LoadError, match=f"cannot keep 9 of {EXPERTS} experts"):
        load_model(tiny.folder, cpu_experts=9)
    with pytest.raises(PackError, match="split between homes"):
        pack(load_model(tiny.folder, cpu_experts=2).model, "fp8")


def test_hash_routed_and_learned_layers_count_their_routing(tiny) -> None:
    model = load_model(tiny.folder, cpu_experts=2).model
    ids = PROMPTS[0]
    v4.step(model, [model.new_state()], [ids])
    counts = model.routing.counts
    assert all(layer.ffn.routing == (model.routing, i) for i, layer in enumerate(model.layers))
    table = model.w["layers.0.ffn.gate.tid2eid"]  # layer 0 routes by a fixed table
    assert counts[0].tolist() == torch.bincount(table[ids].reshape(-1), minlength=EXPERTS).tolist()
    assert (counts.sum(dim=1) == len(ids) * 2).all()  # every layer: top-2 of every token


def test_routing_counted_while_serving_places_the_next_load(release, tmp_path, monkeypatch) -> None:
    from codeagent.backend.engine import Request
    from codeagent.backend.layers.sampler import SamplingParams
    from codeagent.backend.runtime import build_engine, load, routing_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loaded = load(release, "float32", "cpu", cpu_experts=3)
    engine = build_engine(loaded, set())
    engine.generate([Request(p, SamplingParams(max_tokens=6, ignore_eos=True)) for p in PROMPTS])
    counts = loaded.checkpoint.model.routing.counts.clone()
    engine.close()
    loaded.close()
    saved = json.loads(routing_file(release).read_text())
    assert saved == counts.tolist() and len(saved) == LAYERS and sum(map(sum, saved)) > 0

    again = load(release, "float32", "cpu", cpu_experts=3).checkpoint.model
    assert again.routing.counts.tolist() == counts.tolist()  # counting goes on from there
    one_home, moved = load_model(release).model, False
    for index, layer in enumerate(again.layers):
        homes = layer.ffn.homes
        on_host = [e for e in range(EXPERTS) if bool(homes.home[e])]
        assert on_host == least_used(counts[index], EXPERTS, 3)
        moved |= on_host != least_used(None, EXPERTS, 3)
        first = on_host[0]  # its FP4 bytes were filled in its host slot
        assert torch.equal(hosted(again, index)[0].weight[0], routed(one_home, index)[0].weight[first])
    assert moved  # the counts chose another placement than the highest ids somewhere


def test_generate_cli_with_experts_in_host_memory(release, tmp_path) -> None:
    argv = [sys.executable, "-m", "codeagent.tui.cli", "generate", "--model", str(release)]
    argv += ["--prompt-ids", ",".join(map(str, PROMPTS[0])), "--max-tokens", "6", "--json"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.run([*argv, "--cpu-experts", count], capture_output=True, text=True, env=env)
        for count in ("0", "2", "auto")
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    tokens = [json.loads(run.stdout)["token_ids"] for run in runs]
    assert len(tokens[0]) == 6 and tokens[1] == tokens[0] == tokens[2]


def test_auto_counts_packed_experts_at_their_size() -> None:
    """One FP4 routed expert of DeepSeek-V4-Flash (shipped config, estimated release layout) is
    17/32 of a byte a weight (codes and one scale byte per 32) as the loader keeps it, and
    two bytes a weight when it is dequantized to bf16 at load."""
    from codeagent.backend.planning.checkpoint import estimated
    from codeagent.backend.planning.kv import meta_model
    from codeagent.backend.planning.offload import RESERVE, expert_sizes, host_experts_needed
    from codeagent.backend.planning.source import shipped_config

    raw = shipped_config("deepseek-v4-flash")
    config = meta_model(raw, torch.bfloat16).config
    entries = estimated(raw, config)
    weights = 3 * config.hidden_size * config.moe_intermediate_size
    packed = expert_sizes(entries, config, torch.bfloat16, keep_packed=True)
    assert (packed.per_expert, packed.layers, packed.experts) == (
        weights * 17 // 32,
        config.num_hidden_layers,
        config.n_routed_experts,
    )
    assert expert_sizes(entries, config, torch.bfloat16, keep_packed=False).per_expert == weights * 2
    short = 10 * packed.per_expert * packed.layers + 1  # a little over ten experts a layer too many
    assert host_experts_needed(10**11, 0, 10**11 + RESERVE - short, packed) == 11
    assert host_experts_needed(10**12, 0, 0, packed) == config.n_routed_experts  # capped at every expert
