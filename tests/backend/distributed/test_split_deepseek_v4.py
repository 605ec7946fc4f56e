"""DeepSeek-V4 split across ranks (gloo on 127.0.0.1, one process per rank) generates exactly the
single-process engine's greedy tokens (itself token-exact against transformers): tp 2 and 4,
with and without ep, on a tiny model with every attention type (window-only, CSA with its
indexer, HCA), hash-routed and learned-routed layers, float32 experts and packed FP4 and FP8
release experts; mixed batches under chunked prefill, prefix hits from memory and from disk,
preemption. A split that would cut packed experts' scale groups is refused, naming why.

Tolerance: the split sums partial results in another order (attention output, indexer scores,
MoE output), so its float32 logits differ from the single process's by up to about 5e-6
(measured teacher-forced over these shapes at tp 2 and 4; logits span about +-3), well under
the gaps between the top tokens on these prompts, so the tokens are equal.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.distributed.group import Group
from codeagent.backend.distributed.launch import start
from codeagent.backend.distributed.layout import Layout, LayoutError
from codeagent.backend.engine import Engine, Request
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.loader import LoadError, load_model
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.model import DeepseekV4ForCausalLM
from codeagent.backend.models.deepseek_v4.shares import held_experts, piece
from codeagent.backend.packed_weights import PackedExperts

BACKEND_TESTS = Path(__file__).resolve().parents[1]
VOCAB = 301  # not a multiple of 4: the last rank's vocabulary share is short
# 8 heads in 4 output groups, 16 indexer heads, an expert width of 256: every share divides by
# 2 and 4, FP4's 32-input groups stay whole at tp 4, FP8's 128-blocks at tp 2 (not at tp 4)
SHAPES = {"vocab_size": VOCAB, "num_attention_heads": 8, "o_groups": 4, "moe_intermediate_size": 256}
QUANTIZED = {"quant_method": "fp8", "fmt": "e4m3", "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}
LAYOUTS = [
    (2, False, "plain"),
    (4, False, "fp4"),
    (2, True, "fp8"),
    (4, True, "plain"),
    (2, False, "fp8"),
    (4, True, "fp4"),
]


def _v4_tests():
    spec = importlib.util.spec_from_file_location(
        "split_uses_test_deepseek_v4", BACKEND_TESTS / "test_deepseek_v4.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prompt(length: int, seed: int) -> list[int]:
    return torch.randint(0, VOCAB, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


PROMPTS = [prompt(41, 1), prompt(3, 2), prompt(62, 3), prompt(18, 4)]  # mixed lengths, some past index_topk


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny V4 in transformers' spelling (float32), and in the release layout with FP4 or FP8
    routed experts (FP8 projections and shared expert), each config declaring its format."""
    v4 = _v4_tests()
    root = tmp_path_factory.mktemp("split_v4")
    tiny = v4.save(root / "plain", v4.reference_model(**SHAPES))
    folders = {"plain": tiny.folder}
    for fmt in ("fp4", "fp8"):
        folder = root / fmt
        folder.mkdir()
        save_file(v4.release_quantized(tiny.tensors, fmt)[0], folder / "model.safetensors")
        declared = {"expert_dtype": "fp4"} if fmt == "fp4" else {}  # FP8 experts: quantization alone says so
        (folder / "config.json").write_text(
            json.dumps(dict(tiny.config, quantization_config=QUANTIZED, **declared))
        )
        folders[fmt] = folder
    return folders


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEAGENT_DIST_TIMEOUT", "60")


def requests(max_tokens: int = 8) -> list[Request]:
    return [Request(p, SamplingParams(max_tokens=max_tokens, ignore_eos=True)) for p in PROMPTS]


def engine(model, cache: CacheConfig, group: Group | None = None) -> Engine:
    options = {"group": group} if group is not None else {}
    return Engine(model, set(), cache=cache, max_batch_tokens=48, **options)  # prompts prefill in chunks


@functools.cache
def single(folder: Path, max_tokens: int = 8) -> list[list[int]]:
    """The single-process engine's tokens (the same for every cache size: preemption recomputes)."""
    one = engine(load_model(folder).model, CacheConfig(block_size=8, num_blocks=96))
    try:
        return [r.token_ids for r in one.generate(requests(max_tokens))]
    finally:
        one.close()


class Split:
    """Rank 0's engine over a group whose other ranks this test started."""

    def __init__(self, folder: Path, tp: int, ep: bool, cache: CacheConfig) -> None:
        self.group, self.workers, _ = start(folder, "float32", "cpu", tp, ep)
        self.engine = engine(load_model(folder, group=self.group).model, cache, self.group)

    def close(self) -> None:
        self.engine.close()
        self.workers.close()
        self.group.close()


@pytest.mark.parametrize(("tp", "ep", "which"), LAYOUTS)
def test_every_layout_generates_the_single_engines_tokens(checkpoints, tp: int, ep: bool, which: str) -> None:
    folder = checkpoints[which]
    expected = single(folder)
    split = Split(folder, tp, ep, CacheConfig(block_size=8, num_blocks=96))
    try:
        first = split.engine.generate(requests())
        again = split.engine.generate(requests())  # the same prompts: prefix hits from memory
    finally:
        split.close()
    assert [r.token_ids for r in first] == expected
    assert [r.token_ids for r in again] == expected
    assert [r.cached_tokens for r in again] == [(len(p) - 1) // 8 * 8 for p in PROMPTS]
    assert split.workers.failed() is None


@pytest.mark.usefixtures("fp4_float_route")
def test_preempted_requests_recompute_the_same_tokens(checkpoints) -> None:
    cache = CacheConfig(block_size=8, num_blocks=16, prefix_caching=False)  # too few for all four at once
    expected = single(checkpoints["fp4"], 20)
    split = Split(checkpoints["fp4"], 2, True, cache)
    try:
        got = [r.token_ids for r in split.engine.generate(requests(20))]
        preemptions = split.engine.stats.preemptions
    finally:
        split.close()
    assert preemptions > 0
    assert got == expected


def test_disk_hits_restore_every_ranks_state(checkpoints, tmp_path: Path) -> None:
    """Blocks carry the compressors' overlap state, so a fresh group resumes from disk on every rank."""
    folder = checkpoints["fp4"]
    cache = CacheConfig(block_size=8, num_blocks=96, disk_folder=tmp_path / "kv")
    split = Split(folder, 2, False, cache)
    try:
        split.engine.generate(requests())
        split.engine.flush()
    finally:
        split.close()  # the followers write their exports before they exit
    counts = [len(list(p.iterdir())) for p in sorted((tmp_path / "kv").glob("*/rank*"))]
    assert len(counts) == 2 and counts[0] == counts[1] > 0
    again = Split(folder, 2, False, cache)  # a fresh group: its pools are empty, its disks are not
    try:
        results = again.engine.generate(requests())
    finally:
        again.close()
    assert [r.token_ids for r in results] == single(folder)
    assert [r.disk_tokens for r in results] == [(len(p) - 1) // 8 * 8 for p in PROMPTS]


@pytest.mark.parametrize(("tp", "ep", "which"), [(4, False, "fp4"), (2, True, "fp8"), (4, False, "plain")])
def test_each_rank_holds_exact_slices_of_the_whole_model(checkpoints, tp: int, ep: bool, which: str) -> None:
    """Loaded as each rank (a group that only names the layout: loading needs no collective), every
    weight is exactly its share of the single-process model's: packed experts still packed."""
    whole = load_model(checkpoints[which]).model
    for rank in range(tp):
        model = load_model(checkpoints[which], group=Group(Layout(tp, ep, rank))).model
        experts = held_experts(model.config, model.layout)
        for name, mine in model.w.items():
            full = whole.w[name]
            if name.endswith(("ffn.w13", "ffn.w2")):
                assert isinstance(mine, PackedExperts) == (which != "plain")
                assert torch.equal(_decoded(mine), _expert_share(_decoded(full)[experts], name, tp, ep, rank))
                continue
            part = piece(name, model.config, model.layout)
            share = full if part is None else full.narrow(part.dim, part.start, part.stop - part.start)
            assert torch.equal(mine, share), name


def _decoded(experts) -> torch.Tensor:
    if isinstance(experts, PackedExperts):
        return torch.stack([experts.expert(e, torch.float32) for e in range(experts.shape[0])])
    return experts


def _expert_share(full: torch.Tensor, name: str, tp: int, ep: bool, rank: int) -> torch.Tensor:
    """Whole experts (ep), or each expert's rows of w1 and of w3 (w13) or columns (w2) of this rank."""
    if ep:
        return full
    if name.endswith("w2"):
        return full.chunk(tp, dim=2)[rank]
    gate, up = full.chunk(2, dim=1)
    return torch.cat((gate.chunk(tp, dim=1)[rank], up.chunk(tp, dim=1)[rank]), dim=1)


def test_a_split_that_cuts_packed_scale_groups_is_refused(checkpoints, tmp_path: Path) -> None:
    # FP8 experts 256 wide at tp 4: 64 a rank cuts the 128x128 blocks; declared, refused before reading
    with pytest.raises(LoadError, match=r"intermediate size \(256\) gives 64 per rank .*FP8's 128x128"):
        load_model(checkpoints["fp8"], group=Group(Layout(4, False, 1)))
    # undeclared (a config without quantization_config): refused when the first expert arrives
    (tmp_path / "model.safetensors").symlink_to(checkpoints["fp8"] / "model.safetensors")
    config = json.loads((checkpoints["fp8"] / "config.json").read_text())
    del config["quantization_config"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadError, match="cuts FP8's 128x128 scale blocks; split the experts whole"):
        load_model(tmp_path, group=Group(Layout(4, False, 0)))
    assert load_model(tmp_path, group=Group(Layout(4, True, 0))).model  # whole experts: nothing cut
    # FP4 experts 32 wide at tp 2: 16 a rank cuts the groups of 32 inputs of w2
    narrow = DeepseekV4Config.from_dict(dict(config, moe_intermediate_size=32, expert_dtype="fp4"))
    with pytest.raises(LayoutError, match=r"\(32\) gives 16 per rank .*FP4's scale groups of 32 inputs"):
        DeepseekV4ForCausalLM(narrow, device="meta", group=Group(Layout(2)))


def test_a_layout_the_heads_cannot_take_is_a_load_error(checkpoints) -> None:
    with pytest.raises(LoadError, match=r"output groups \(4\) does not divide across 8 ranks"):
        load_model(checkpoints["plain"], group=Group(Layout(8)))
