"""The sampler's greedy pick on CPU (NumPy's argmax, ten times faster than torch's over a
vocabulary) against ``torch.argmax``: the same ids, its ties and NaNs included."""

from __future__ import annotations

import torch


def test_greedy_tokens_are_torchs_argmax_with_its_ties_and_nans():
    from codeagent.backend.layers.sampler import greedy_tokens

    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(7))
    logits[1, [10, 500]] = 100.0  # equal maxima: the first
    logits[2, [3, 900]] = float("nan")  # a NaN ranks above all: the first
    logits[3] = float("-inf")
    assert (
        greedy_tokens(logits)
        == torch.argmax(logits, dim=-1).tolist()
        == [*greedy_tokens(logits[:1]), 10, 3, 0]
    )
    assert (
        greedy_tokens(logits.to(torch.bfloat16)) == torch.argmax(logits.to(torch.bfloat16), dim=-1).tolist()
    )
