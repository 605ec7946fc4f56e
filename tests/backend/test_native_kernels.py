"""The native CPU kernels (``kernels/native.c``) against the layers' torch references, their
batch invariance, their build and its failure, and the engine running them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from codeagent.backend.cache.paged import KVPool, KVStream, SeqBlocks
from codeagent.backend.cache.tables import BlockTables
from codeagent.backend.kernels import dispatch, native
from codeagent.backend.layers import attention, moe, norm
from codeagent.backend.layers.attention import KVCache

PROBLEM = native.problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"native kernels unavailable: {PROBLEM}")
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture
def reference(monkeypatch):
    """The layers' torch references (the kernels are called directly)."""
    monkeypatch.setenv("CODEAGENT_KERNELS", "torch")


def randn(*shape: int, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale).to(dtype)


def close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 3, 8, 19])
@pytest.mark.parametrize("inner", [96, 48])  # bf16 in pairs (AVX512-BF16) needs a multiple of 32
def test_linear_matches_the_blas(reference, dtype, rows, inner):
    x, w = randn(rows, inner, dtype=dtype, seed=1), randn(37, inner, dtype=dtype, seed=2, scale=0.1)
    got = native.linear(x, w)
    close(got, F.linear(x.float(), w.float()), dtype)
    for row in range(rows):  # streamed 8, 4 or 2 weight rows at a time by batch size: the same bits
        assert torch.equal(native.linear(x[row : row + 1], w)[0], got[row])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 2, 8, 19])
@pytest.mark.parametrize("inter", [32, 48])  # the down projection in bf16 pairs, or not
def test_moe_matches_the_reference_and_ignores_the_batch(reference, dtype, tokens, inter):
    experts, hidden, k = 6, 64, 3
    x = randn(tokens, hidden, dtype=dtype, seed=3)
    w13 = randn(experts, 2 * inter, hidden, dtype=dtype, seed=4, scale=0.1)
    w2 = randn(experts, hidden, inter, dtype=dtype, seed=5, scale=0.1)
    weights, ids = moe.softmax_topk(randn(tokens, experts, dtype=dtype, seed=6), k, normalize=True)
    got = native.moe(x, w13, w2, weights, ids)
    want = moe.experts_forward(x.float(), w13.float(), w2.float(), weights.float(), ids)
    close(got, want, dtype)
    for row in range(tokens):  # each token alone gives the very same bits
        alone = native.moe(x[row : row + 1], w13, w2, weights[row : row + 1], ids[row : row + 1])
        assert torch.equal(alone[0], got[row])


def test_moe_rejects_an_expert_id_out_of_range():
    x, w13, w2 = torch.zeros(1, 16), torch.zeros(2, 32, 16), torch.zeros(2, 16, 16)
    with pytest.raises(native.NativeError, match="expert id out of range"):
        native.moe(x, w13, w2, torch.ones(1, 1), torch.tensor([[2]]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_weight", [True, False])
@pytest.mark.parametrize("dim", [48, 40])  # whole vectors of 16, and a tail
def test_rms_norm_matches_the_reference(reference, dtype, with_weight, dim):
    x = randn(5, 4, dim, dtype=dtype, seed=7)
    weight = randn(dim, dtype=dtype, seed=8) if with_weight else None
    got, want = native.rms_norm(x, weight, 1e-6), norm.rms_norm(x, weight, 1e-6)
    if dtype == torch.bfloat16:
        assert torch.equal(got, want)  # the same two roundings
    else:
        close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 5, 300])
@pytest.mark.parametrize("dim", [32, 24])  # halves of whole vectors of 16 (vectorised), and not
def test_norm_rope_matches_norm_then_rotary_on_a_column_slice(reference, dtype, tokens, dim):
    from codeagent.backend.layers.rotary import apply_rotary, cos_sin, inverse_frequencies

    heads = 3
    fused = randn(tokens, 2 * heads * dim, dtype=dtype, seed=11)  # q is the first half of each row
    weight = randn(dim, dtype=dtype, seed=12)
    cos, sin = cos_sin(torch.arange(7, 7 + tokens), inverse_frequencies(dim, 10000.0))
    q = fused[:, : heads * dim]
    got = native.norm_rope(q, weight, cos, sin, 1e-6)
    want = apply_rotary(norm.rms_norm(q.reshape(tokens, heads, dim), weight, 1e-6), cos, sin)
    if dtype == torch.bfloat16:
        assert torch.equal(got, want)  # every rounding where the references round
    else:
        close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (6, 2), (4, 4)])
def test_decode_attention_writes_the_new_rows_and_matches_the_reference(reference, dtype, heads, kv_heads):
    dim, block = 32, 4
    pool = KVPool(
        [KVStream("k", 1, (kv_heads, dim), dtype), KVStream("v", 1, (kv_heads, dim), dtype)], block, 24, "cpu"
    )
    order = torch.randperm(24, generator=torch.Generator().manual_seed(0)).tolist()  # scattered blocks
    caches, contexts, cached = [], [], [0, 6, 11]
    for index, n in enumerate(cached):
        seq = SeqBlocks(pool, order[index * 6 : index * 6 + 6])
        cache = KVCache(seq.rows("k"), seq.rows("v"))
        rows = randn(2, n, kv_heads, dim, dtype=dtype, seed=10 + index)
        cache.append(rows[0], rows[1])
        caches.append(cache)
        contexts.append(rows)
    q = randn(3, heads, dim, dtype=dtype, seed=20)
    k_new, v_new = (
        randn(3, kv_heads, dim, dtype=dtype, seed=21),
        randn(3, kv_heads, dim, dtype=dtype, seed=22),
    )
    first = caches[0].k
    tables = torch.tensor([c.k.seq.table for c in caches])
    lengths = torch.tensor([n + 1 for n in cached])
    got = native.decode_attention(
        q, k_new, v_new, first.tensor, caches[0].v.tensor, tables, block, lengths, dim**-0.5
    )
    for index, (cache, rows) in enumerate(zip(caches, contexts, strict=True)):
        cache.k.length += 1
        cache.v.length += 1
        assert torch.equal(cache.k.read(), torch.cat([rows[0], k_new[index : index + 1]]))
        assert torch.equal(cache.v.read(), torch.cat([rows[1], v_new[index : index + 1]]))
        want = attention.causal_attention(q[index : index + 1], cache.k.read(), cache.v.read(), dim**-0.5)
        close(got[index : index + 1], want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_attention_over_several_chunks_merges_them(reference, dtype):
    dim, kv_heads, heads, block = 32, 2, 8, 16
    lengths = [700, 5, 256]  # 3 chunks of 256 rows, 1, and exactly 1
    blocks = [-(-n // block) for n in lengths]
    pool = KVPool(
        [KVStream("k", 1, (kv_heads, dim), dtype), KVStream("v", 1, (kv_heads, dim), dtype)],
        block,
        sum(blocks),
        "cpu",
    )
    order = torch.randperm(sum(blocks), generator=torch.Generator().manual_seed(3)).tolist()
    caches = []
    for index, n in enumerate(lengths):
        seq = SeqBlocks(pool, order[sum(blocks[:index]) : sum(blocks[: index + 1])])
        cache = KVCache(seq.rows("k"), seq.rows("v"))
        scale = 3.0 if index == 0 else 1.0  # spread scores: most weight on a few rows
        cache.append(
            randn(n - 1, kv_heads, dim, dtype=dtype, seed=50 + index, scale=scale),
            randn(n - 1, kv_heads, dim, dtype=dtype, seed=60 + index),
        )
        caches.append(cache)
    q = randn(3, heads, dim, dtype=dtype, seed=70)
    k_new, v_new = (
        randn(3, kv_heads, dim, dtype=dtype, seed=71),
        randn(3, kv_heads, dim, dtype=dtype, seed=72),
    )
    widest = max(blocks)
    tables = torch.tensor([c.k.seq.table + [0] * (widest - len(c.k.seq.table)) for c in caches])
    got = native.decode_attention(
        q, k_new, v_new, pool.tensors["k"], pool.tensors["v"], tables, block, torch.tensor(lengths), dim**-0.5
    )
    for index, cache in enumerate(caches):
        cache.k.length += 1
        cache.v.length += 1
        want = attention.causal_attention(q[index : index + 1], cache.k.read(), cache.v.read(), dim**-0.5)
        close(got[index : index + 1], want, dtype)
        alone = native.decode_attention(
            q[index : index + 1],
            k_new[index : index + 1],
            v_new[index : index + 1],
            pool.tensors["k"],
            pool.tensors["v"],
            tables[index : index + 1],
            block,
            torch.tensor(lengths[index : index + 1]),
            dim**-0.5,
        )
        assert torch.equal(alone[0], got[index])  # the batch does not change a sequence's bits


def test_attend_takes_the_native_path_for_a_paged_decode_batch_and_the_loop_otherwise():
    kernels = dispatch.choose("cpu", "native")
    dim, kv_heads, heads, block = 16, 2, 4, 4
    pool = KVPool(
        [KVStream("k", 1, (kv_heads, dim), torch.float32), KVStream("v", 1, (kv_heads, dim), torch.float32)],
        block,
        8,
        "cpu",
    )
    seqs = [SeqBlocks(pool, [0, 1]), SeqBlocks(pool, [5, 3])]
    caches = [KVCache(s.rows("k"), s.rows("v")) for s in seqs]
    for index, cache in enumerate(caches):
        cache.append(
            randn(3, kv_heads, dim, dtype=torch.float32, seed=index),
            randn(3, kv_heads, dim, dtype=torch.float32, seed=9 + index),
        )
    q, k, v = (
        randn(2, h, dim, dtype=torch.float32, seed=30 + i) for i, h in enumerate((heads, kv_heads, kv_heads))
    )
    before = native.calls["decode_attention"]
    tables = BlockTables(block, [s.table for s in seqs], [len(c) for c in caches], [1, 1])
    out = attention.attend(q, k, v, caches, [1, 1], dim**-0.5, tables, kernels)
    assert native.calls["decode_attention"] == before + 1
    assert [len(c) for c in caches] == [4, 4]
    for index, cache in enumerate(caches):  # the reference: no kernels given
        want = attention.causal_attention(q[index : index + 1], cache.k.read(), cache.v.read(), dim**-0.5)
        torch.testing.assert_close(out[index : index + 1], want, atol=1e-5, rtol=1e-5)
    prefill = randn(3, heads, dim, dtype=torch.float32, seed=40)  # a chunk of 3 is not a decode batch
    tables = BlockTables(block, [seqs[0].table], [len(caches[0])], [3])
    attention.attend(
        prefill, k[:1].repeat(3, 1, 1), v[:1].repeat(3, 1, 1), caches[:1], [3], dim**-0.5, tables, kernels
    )
    assert native.calls["decode_attention"] == before + 1
    assert len(caches[0]) == 7


def test_the_engine_decodes_through_the_native_kernels(qwen3_moe_dir):
    from codeagent.backend.engine import Engine, Request
    from codeagent.backend.layers.sampler import SamplingParams
    from codeagent.backend.loader import load_model

    model = load_model(qwen3_moe_dir).model
    prompts = [[5, 9, 200, 31], [7, 7, 7, 1, 2, 3, 4, 5, 6]]
    params = SamplingParams(max_tokens=10)

    def run(mode: str) -> list[list[int]]:
        model.kernels = dispatch.choose("cpu", mode)
        engine = Engine(model, set())
        return [r.token_ids for r in engine.generate([Request(p, params) for p in prompts])]

    before = dict(native.calls)
    assert run("native") == run("torch")
    for kernel in ("moe", "decode_attention", "rms_norm", "norm_rope"):
        assert native.calls[kernel] > before.get(kernel, 0), kernel


def test_without_a_compiler_the_layers_say_why_and_run_the_references(tmp_path):
    script = (
        "import torch\n"
        "from codeagent.backend.kernels import dispatch\n"
        "x = torch.zeros(1, 16)\n"
        "print(dispatch.native_problem())\n"
        "print(dispatch.choose('cpu').native is not None)\n"
        "print(dispatch.kernels_in_use())\n"
        "import os; os.environ['CODEAGENT_KERNELS'] = 'native'\n"
        "try:\n"
        "    dispatch.choose(x.device)\n"
        "except dispatch.KernelUnavailable as err:\n"
        "    print('refused:', err)\n"
    )
    env = {**os.environ, "PATH": str(tmp_path), "CC": "", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("CODEAGENT_KERNELS", None)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    problem, used, words, refused = done.stdout.strip().splitlines()
    assert "no C compiler" in problem
    assert used == "False"
    assert words.startswith("torch reference (native kernels unavailable: no C compiler")
    assert refused.startswith("refused: CODEAGENT_KERNELS=native: no C compiler")


def test_a_build_lands_whole_in_the_cache_folder(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    script = "from codeagent.backend.kernels import native\nprint(native.problem())\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.stdout.strip() == "None", done.stderr
    built = sorted(p.name for p in (tmp_path / "codeagent" / "kernels").iterdir())
    assert len(built) == 2, built  # native.c's and native_rows.c's, no partial left
    assert built[0].startswith("native-") and built[1].startswith("native_rows-")
    assert all(name.endswith(".so") for name in built)


def test_an_unwritable_cache_folder_builds_in_the_temporary_directory(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(blocked), "TMPDIR": str(scratch)}
    script = "from codeagent.backend.kernels import native\nprint(native.problem())\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.stdout.strip() == "None", done.stderr
    (folder,) = scratch.iterdir()
    assert folder.name.startswith("codeagent-kernels-")
    assert [p.suffix for p in folder.iterdir()] == [".so", ".so"]  # native.c's and native_rows.c's
