"""Qwen3-MoE's bound decode program (``models/qwen3_moe/decode_program.py``) against the
layer-by-layer path it replaces: the same logits to the bit, step after step across block
boundaries, one sequence or a batch, in every dtype and packed format it takes; the caches it
leaves behind serve the layer-by-layer path; and the models and steps it must not take, it
does not."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.cache.paged import KVPool, SeqBlocks
from codeagent.backend.kernels import native, native_packed
from codeagent.backend.models.qwen3_moe.decode_program import MAX_SEQUENCES, table_width
from codeagent.backend.runner import forward_batch
from codeagent.backend.runtime import load

pytestmark = pytest.mark.skipif(native.problem() is not None, reason=f"native kernels: {native.problem()}")

BLOCK = 16
PROMPT = 21  # the prompt ends inside the second block; decoding crosses into the third and fourth


@pytest.fixture(scope="module")
def folder(tmp_path_factory, qwen3_moe_factory):
    """A tiny Qwen3-MoE whose shapes every native kernel takes (128 wide: the FP4 variant keeps
    its head in INT6), every layer sparse."""
    out = tmp_path_factory.mktemp("program_qwen3")
    qwen3_moe_factory(initializer_range=0.02, hidden_size=128, mlp_only_layers=[]).save_pretrained(out)
    return out


def sequences(model, n: int = 2):
    """One pool, ``n`` sequences over their own 7 blocks each."""
    pool = KVPool(model.cache_streams(BLOCK), BLOCK, 8 * n, torch.device("cpu"))
    tables = [list(range(8 * i, 8 * i + 7)) for i in range(n)]
    return pool, [model.new_state(SeqBlocks(pool, table), 0) for table in tables], tables


def two_sequences(model):
    """Two sequences: one for each path."""
    return sequences(model, 2)


def step(model, pool, state, table, tokens, start, program):
    model.use_decode_program = program
    return forward_batch(model, pool, torch.device("cpu"), [(state, tokens, start, table)])


@pytest.mark.parametrize("variant", ["float32", "bfloat16", "fp8", "fp4"])
def test_the_program_gives_the_layer_by_layer_logits_to_the_bit(folder, variant):
    packed = variant in ("fp8", "fp4")
    if packed and native_packed.problem() is not None:
        pytest.skip(f"packed kernels: {native_packed.problem()}")
    loaded = load(folder, "bfloat16" if packed else variant, "cpu", pack=variant if packed else None)
    model = loaded.checkpoint.model
    pool, (ours, theirs), tables = two_sequences(model)
    prompt = torch.randint(0, 512, (PROMPT,), generator=torch.Generator().manual_seed(5)).tolist()
    first = [step(model, pool, s, t, prompt, 0, True) for s, t in zip((ours, theirs), tables, strict=True)]
    assert torch.equal(first[0], first[1])  # a prompt never takes the program
    token, before = int(first[0].argmax()), native.calls["decode_program"]
    for position in range(PROMPT, PROMPT + 2 * BLOCK):
        got = step(model, pool, ours, tables[0], [token], position, True)
        want = step(model, pool, theirs, tables[1], [token], position, False)
        assert torch.equal(got, want), f"step at position {position}"
        token = int(got.argmax())
    assert native.calls["decode_program"] - before == 2 * BLOCK  # every decode step of ours took it
    assert model.program_refusals == {}
    assert all(len(cache) == PROMPT + 2 * BLOCK for cache in ours)
    # the caches it wrote serve the layer-by-layer path: a chunk on top of each sequence agrees
    chunk = prompt[:5]
    end = PROMPT + 2 * BLOCK
    after = [step(model, pool, s, t, chunk, end, False) for s, t in zip((ours, theirs), tables, strict=True)]
    assert torch.equal(after[0], after[1])


def test_models_it_cannot_run_say_why_and_decode_layer_by_layer(tmp_path, qwen3_moe_factory):
    qwen3_moe_factory(initializer_range=0.02, hidden_size=128, mlp_only_layers=[1]).save_pretrained(tmp_path)
    model = load(tmp_path, "float32", "cpu").checkpoint.model
    pool, (seq, _), tables = two_sequences(model)
    logits = step(model, pool, seq, tables[0], [1, 2, 3], 0, True)
    before = native.calls["decode_program"]
    step(model, pool, seq, tables[0], [int(logits.argmax())], 3, True)
    assert "layer 1 is not a sparse MoE layer" in model.program_refusals[1]
    assert native.calls["decode_program"] == before and model.decode_programs == {}


@pytest.mark.parametrize("variant", ["bfloat16", "fp4"])
def test_a_batch_takes_one_program_and_gives_each_sequence_its_own_logits(folder, variant):
    """Three sequences at different lengths decode together through one program; three twins decode
    together layer by layer; each pair agrees to the bit at every step."""
    packed = variant == "fp4"
    if packed and native_packed.problem() is not None:
        pytest.skip(f"packed kernels: {native_packed.problem()}")
    loaded = load(folder, "bfloat16", "cpu", pack="fp4" if packed else None)
    model = loaded.checkpoint.model
    pool, states, tables = sequences(model, 6)
    generator = torch.Generator().manual_seed(6)
    prompts = [torch.randint(0, 512, (n,), generator=generator).tolist() for n in (7, 21, 30)] * 2
    ours, theirs = [0, 1, 2], [3, 4, 5]
    tokens, lengths = [], [len(p) for p in prompts]
    for i in range(6):
        tokens.append(int(step(model, pool, states[i], tables[i], prompts[i], 0, True).argmax()))
    before = native.calls["decode_program"]
    for _ in range(BLOCK + 3):  # every sequence crosses a block boundary
        logits = {}
        for group, program in ((ours, True), (theirs, False)):
            model.use_decode_program = program
            entries = [(states[i], [tokens[i]], lengths[i], tables[i]) for i in group]
            for i, row in zip(group, forward_batch(model, pool, torch.device("cpu"), entries), strict=True):
                logits[i] = row
        for i in ours:
            assert torch.equal(logits[i], logits[i + 3]), f"sequence {i} at {lengths[i]}"
        tokens = [int(logits[i].argmax()) for i in range(6)]
        lengths = [n + 1 for n in lengths]
    assert native.calls["decode_program"] - before == BLOCK + 3
    assert sorted(model.decode_programs) == [3] and model.program_refusals == {}


def test_switched_off_models_and_prefix_sharing_batches_decode_layer_by_layer(folder):
    model = load(folder, "float32", "cpu").checkpoint.model
    pool, states, tables = two_sequences(model)
    for state, table in zip(states, tables, strict=True):
        step(model, pool, state, table, [1, 2, 3], 0, True)
    before = native.calls["decode_program"]
    step(model, pool, states[0], tables[0], [5], 3, False)
    assert native.calls["decode_program"] == before
    step(model, pool, states[0], tables[0], [6], 4, True)
    assert native.calls["decode_program"] == before + 1
    # two sequences whose tables begin with the same blocks (a prompt shared through the prefix
    # cache) read those rows once on the layer path: no program for them
    shared = KVPool(model.cache_streams(BLOCK), BLOCK, 80, torch.device("cpu"))
    prompt = torch.randint(0, 512, (64 * BLOCK + 1,), generator=torch.Generator().manual_seed(8)).tolist()
    first, second = [*range(65), 65], [*range(65), 70]
    state = model.new_state(SeqBlocks(shared, first), 0)
    step(model, shared, state, first, prompt, 0, True)
    other = model.new_state(SeqBlocks(shared, second), len(prompt) - 1)  # the shared blocks' rows
    step(model, shared, other, second, prompt[-1:], len(prompt) - 1, True)
    model.use_decode_program = True
    before = native.calls["decode_program"]
    entries = [(state, [7], len(prompt), first), (other, [8], len(prompt), second)]
    forward_batch(model, shared, torch.device("cpu"), entries)
    assert native.calls["decode_program"] == before
    assert MAX_SEQUENCES == 8


def test_a_table_past_the_programs_room_builds_a_wider_one():
    assert [table_width(n) for n in (1, 64, 65, 200)] == [64, 64, 128, 256]
