"""The gated delta rule and the short causal convolution of Gated DeltaNet layers (torch references).

The recurrence, per head, with a state S [Dk, Dv] (a map from keys to values) and per token
a query q, key k [Dk], value v [Dv], log decay g <= 0 and write strength beta in (0, 1)::

    S <- exp(g) * S                      (forget)
    u  = beta * (v - S^T k)              (the delta: what S gets wrong about k, scaled)
    S <- S + k u^T                       (write the correction)
    o  = S^T q                           (read with the query, after the write)

Conventions every function here shares (the kernels in ``kernels/`` code against them):

- q and k arrive L2-normalised, and q already multiplied by ``Dk ** -0.5``: the caller (the
  model) scales, no function here does. Computation is in float32 whatever the inputs'
  dtype; outputs come back in v's dtype, states are float32.
- Heads are the value heads: where a model has fewer key heads than value heads, the caller
  repeats q and k to one per value head first (value head i reads key head i // (Hv / Hk),
  ``repeat_interleave`` on the head dimension), so here q, k, v, g and beta share H.
- One sequence per call for the prompt forms (``chunk_gated_delta_rule``,
  ``recurrent_gated_delta_rule``: [T, H, ...] in, the new state returned, the given one left
  as it was); B sequences of one token each for decode (``gated_delta_step``: their states
  [B, H, Dk, Dv] updated in place).

``chunk_gated_delta_rule`` is the chunked form (the WY / UT-transform of DeltaNet papers):
inside a chunk of C tokens the corrections u solve a unit lower-triangular system, so a
chunk costs a few [C, C] and [C, D] products and the state is touched once per chunk
instead of once per token. Derivation, with c_t the cumulative log decay from the chunk's
start through token t and S0 the state before the chunk::

    u_t + sum_{s<t} beta_t exp(c_t - c_s) (k_t . k_s) u_s = beta_t (v_t - exp(c_t) S0^T k_t)
    o_t = exp(c_t) S0^T q_t + sum_{s<=t} exp(c_t - c_s) (q_t . k_s) u_s
    S_C = exp(c_C) S0 + sum_s exp(c_C - c_s) k_s u_s^T

The last chunk is zero-padded (g = 0, beta = 0, k = v = q = 0: a padded token neither decays
nor writes), so a ragged length changes nothing. ``recurrent_gated_delta_rule`` is the
token-by-token loop above, the specification the chunked form is tested against;
``gated_delta_step`` is one step of it for a batch, the same arithmetic.

``causal_conv1d`` / ``causal_conv1d_step``: a depthwise convolution over time with kernel K
(weight [C, K], the last tap on the newest token), each channel seeing its previous K - 1
inputs, then SiLU. A sequence's conv state is those K - 1 previous inputs [C, K - 1]
(zeros before its first token), kept in the inputs' dtype (exact copies of them).

Limits: references, not fast: the chunked form loops over chunks in Python and solves its
triangular systems with ``torch.linalg.solve_triangular``; the step stacks nothing itself
(callers hand it a [B, ...] state). Triton and native kernels live in ``kernels/``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def recurrent_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [T, H, Dk], v [T, H, Dv], g, beta [T, H], state [H, Dk, Dv] -> (out [T, H, Dv], new state)."""
    s = state.float().clone()
    qf, kf, vf = q.float(), k.float(), v.float()
    decay, bf = g.float().exp(), beta.float()
    out = torch.empty(v.shape, dtype=torch.float32, device=v.device)
    for t in range(v.shape[0]):
        out[t] = _advance(s, qf[t], kf[t], vf[t], decay[t], bf[t])
    return out.to(v.dtype), s


def gated_delta_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    states: torch.Tensor,
) -> torch.Tensor:
    """B sequences one token each: q, k [B, H, Dk], v [B, H, Dv], g, beta [B, H], states
    [B, H, Dk, Dv] float32 (updated in place) -> out [B, H, Dv]."""
    out = _advance(states, q.float(), k.float(), v.float(), g.float().exp(), beta.float())
    return out.to(v.dtype)


def _advance(
    s: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    decay: torch.Tensor,
    beta: torch.Tensor,
) -> torch.Tensor:
    """One token for [..., H] heads in place on s [..., H, Dk, Dv]; returns o [..., H, Dv]."""
    s.mul_(decay[..., None, None])
    predicted = torch.einsum("...k,...kv->...v", k, s)  # S^T k
    u = beta[..., None] * (v - predicted)
    s.add_(k[..., :, None] * u[..., None, :])
    return torch.einsum("...k,...kv->...v", q, s)


def chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    chunk: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked form: same arguments and results as ``recurrent_gated_delta_rule``."""
    length, heads = v.shape[:2]
    count = -(-length // chunk)
    pad = count * chunk - length

    def chunks(x: torch.Tensor) -> torch.Tensor:  # [T, H, ...] -> [H, N, C, ...] float32, zero-padded
        x = x.float().transpose(0, 1)
        x = F.pad(x, (0, 0, 0, pad) if x.dim() == 3 else (0, pad))
        return x.reshape(heads, count, chunk, *x.shape[2:])

    qc, kc, vc, gc, bc = chunks(q), chunks(k), chunks(v), chunks(g), chunks(beta)
    c = gc.cumsum(-1)  # [H, N, C]: log decay from the chunk's start through each token
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=v.device).tril()
    # exp(c_t - c_s) for s <= t, zero above the diagonal (masked before exp: no overflow)
    between = (c[..., :, None] - c[..., None, :]).masked_fill(~causal, float("-inf")).exp()
    coupling = bc[..., None] * (kc @ kc.transpose(-1, -2)) * between  # [H, N, C, C]; its diagonal is unused
    # u = fresh - reads @ S0, with both solved from the unit lower-triangular system once
    fresh = torch.linalg.solve_triangular(coupling, bc[..., None] * vc, upper=False, unitriangular=True)
    reads = torch.linalg.solve_triangular(
        coupling, (bc * c.exp())[..., None] * kc, upper=False, unitriangular=True
    )
    scores = (qc @ kc.transpose(-1, -2)) * between  # [H, N, C, C], the diagonal included
    q_start = qc * c.exp()[..., None]  # queries reading the chunk's initial state
    k_end = kc * (c[..., -1:] - c).exp()[..., None]  # keys as they stand at the chunk's end
    end = c[..., -1].exp()[..., None, None]  # [H, N, 1, 1]
    s = state.float().clone()  # [H, Dk, Dv]
    outs = []
    for i in range(count):
        u = fresh[:, i] - reads[:, i] @ s  # [H, C, Dv]
        outs.append(q_start[:, i] @ s + scores[:, i] @ u)
        s = s * end[:, i] + k_end[:, i].transpose(-1, -2) @ u
    out = torch.cat(outs, dim=1)[:, :length].transpose(0, 1)  # [T, H, Dv]
    return out.to(v.dtype), s


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, conv_state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A sequence's new inputs x [T, C] after its previous K - 1 inputs conv_state [C, K - 1],
    weight [C, K] -> (SiLU(conv) [T, C] in x's dtype, the new conv state [C, K - 1])."""
    taps = weight.shape[1]
    window = torch.cat((conv_state.to(x.dtype), x.t()), dim=1)  # [C, K - 1 + T]
    y = F.conv1d(window[None].to(weight.dtype), weight[:, None, :], groups=weight.shape[0])[0]  # [C, T]
    kept = window[:, window.shape[1] - (taps - 1) :].to(conv_state.dtype, copy=True)
    return F.silu(y).t().to(x.dtype), kept


def causal_conv1d_step(x: torch.Tensor, weight: torch.Tensor, conv_states: torch.Tensor) -> torch.Tensor:
    """B sequences one token each: x [B, C], weight [C, K], conv_states [B, C, K - 1] (updated in
    place) -> SiLU(conv) [B, C] in x's dtype."""
    window = torch.cat((conv_states.to(x.dtype), x[:, :, None]), dim=2)  # [B, C, K]
    y = (window.float() * weight.float()).sum(-1).to(weight.dtype)  # summed in float32, as conv1d does
    conv_states.copy_(window[:, :, 1:])
    return F.silu(y).to(x.dtype)
