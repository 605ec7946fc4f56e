"""Device sampling: greedy, the kept sets of top-k / top-p / min-p against ``filter_logits``,
seeded reproducibility, and draws that follow the filtered distribution."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import sampling
from codeagent.backend.layers.sampler import SamplingParams, filter_logits


def test_greedy_takes_the_first_maximum(device):
    logits = torch.tensor([[0.0, 3.0, 1.0, 3.0], [-1.0, -2.0, -0.5, -0.5]], device=device)
    assert sampling.sample(logits, [SamplingParams(), SamplingParams()], [None, None]) == [1, 2]


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.7),
        SamplingParams(temperature=1.0, top_k=5),
        SamplingParams(temperature=1.3, top_k=1),
        SamplingParams(temperature=1.0, top_k=2000),  # more than the vocabulary: off
        SamplingParams(temperature=0.9, top_p=0.8),
        SamplingParams(temperature=1.0, top_p=0.05),
        SamplingParams(temperature=1.0, min_p=0.1),
        SamplingParams(temperature=0.8, top_k=40, top_p=0.9, min_p=0.02),
    ],
)
def test_kept_entries_match_the_reference_filters(randn, params):
    logits = randn(3, 1500) * 3
    logits[1, :10] = 9.0  # ties at the top
    want = torch.stack([filter_logits(row, params) > float("-inf") for row in logits])
    assert torch.equal(sampling.keep_mask(logits, [params] * 3), want)


def test_ties_at_the_top_k_cut_are_kept(device):
    logits = torch.tensor([[5.0, 1.0, 3.0, 3.0, 3.0, 0.0]], device=device)
    params = SamplingParams(temperature=1.0, top_k=2)
    assert sampling.keep_mask(logits, [params]).tolist() == [[True, False, True, True, True, False]]


def test_seeded_rows_repeat_and_differ_by_seed(randn):
    logits = randn(4, 300)
    params = [SamplingParams(temperature=1.0, top_p=0.95)] * 4

    def draw(seed: int) -> list[int]:
        generators = [torch.Generator().manual_seed(seed + i) for i in range(4)]
        return [t for _ in range(3) for t in sampling.sample(logits, params, generators)]

    assert draw(7) == draw(7) and draw(7) != draw(8)


def test_draws_follow_the_filtered_distribution(device):
    """Temperature only (no bisection passes, so many rows stay quick under the interpreter)."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, 1.5, 0.2], device=device)
    params = SamplingParams(temperature=0.8)
    rows = 600
    generators = [torch.Generator().manual_seed(i) for i in range(rows)]
    tokens = sampling.sample(logits.expand(rows, -1), [params] * rows, generators)
    seen = torch.bincount(torch.tensor(tokens), minlength=8).float() / rows
    assert (seen - torch.softmax(logits / 0.8, dim=-1).cpu()).abs().max() < 0.06  # ~3 sigma


def test_draws_never_leave_the_kept_set(device):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, 1.5, 0.2], device=device)
    params = SamplingParams(temperature=1.0, top_k=4, top_p=0.8)
    generators = [torch.Generator().manual_seed(i) for i in range(40)]
    tokens = sampling.sample(logits.expand(40, -1), [params] * 40, generators)
    kept = (filter_logits(logits, params) > float("-inf")).nonzero().flatten().tolist()
    assert set(tokens) <= set(kept) and len(set(tokens)) > 1
