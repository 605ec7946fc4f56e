"""How a model is split across ranks: the parallel layout and what each rank holds.

``Layout(tp, ep)``: ``tp`` ranks form one tensor-parallel group (one model instance); with
``ep`` the routed experts are divided among those ranks whole instead of each expert's
width being split. The rules every family follows (``shard`` gives a rank's slice):

- attention: query heads split evenly (``heads % tp == 0``). Qwen3's key/value heads split
  when ``kv_heads >= tp`` (``kv_heads % tp == 0``), else each rank keeps the one KV head its
  query heads read (replicated, as engines do); DeepSeek-V4's single shared latent (``wq_a``
  and ``wkv`` with their norms), its compressors and the indexer's keys are replicated, so
  every rank keeps the same cache; its attention sinks split with their heads, its grouped
  output projection by groups (``o_groups % tp == 0``: a rank's groups are its heads); the
  indexer's heads split (``index_n_heads % tp == 0``), their weighted scores summed across
  ranks before the top-k (which needs the whole row).
- output projections (attention out, MLP down) take a slice of their input and their
  partial sums are all-reduced; input projections (q, gate/up) produce a slice of outputs.
- dense MLPs and shared experts: intermediate width split (``width % tp == 0``).
- routed experts: without ``ep`` every expert's intermediate width is split; with ``ep``
  rank r holds experts ``[r·E/tp, (r+1)·E/tp)`` whole (``E % tp == 0``). Either way the
  router (and DeepSeek-V4's hash-routing table) runs replicated and the layer's output
  (with the shared expert's) is one all-reduce of partial sums. Experts kept packed (FP4,
  FP8) split only in whole scale groups (``split_whole``): a width share must be a multiple
  of 32 inputs (FP4) or of 128 (FP8's 128x128 blocks), else the layout is refused.
- embedding and LM head: vocabulary split into ``ceil(V / tp)`` rows per rank (the last
  rank's share padded); lookups all-reduced, logits all-gathered.
- norms, routers, mHC, rotary tables: replicated.

Limits: one tensor-parallel group; no pipeline or data parallelism (a second group is a
second server).
"""

from __future__ import annotations

from dataclasses import dataclass


class LayoutError(ValueError):
    """A model cannot be split this way (a size not divisible by the rank count)."""


@dataclass(frozen=True, slots=True)
class Layout:
    tp: int = 1
    ep: bool = False
    rank: int = 0

    def __post_init__(self) -> None:
        if self.tp < 1:
            raise LayoutError(f"--tp must be at least 1, not {self.tp}")
        if not 0 <= self.rank < self.tp:
            raise LayoutError(f"rank {self.rank} is outside a group of {self.tp}")

    @property
    def single(self) -> bool:
        return self.tp == 1

    def key(self) -> str:
        """Names the layout where per-rank state is kept (the disk KV tier): another layout's
        cache holds other rows and is never read under this one."""
        return f"tp{self.tp}{'ep' if self.ep else ''}r{self.rank}"

    def at(self, rank: int) -> Layout:
        return Layout(self.tp, self.ep, rank)

    def split(self, size: int, what: str) -> slice:
        """This rank's even share of ``size`` (which must divide by ``tp``)."""
        if size % self.tp:
            raise LayoutError(f"{what} ({size}) does not divide across {self.tp} ranks")
        share = size // self.tp
        return slice(self.rank * share, (self.rank + 1) * share)

    def split_whole(self, size: int, unit: int, what: str, units: str) -> slice:
        """This rank's even share of ``size`` in whole ``unit``-wide groups (a quantized format's
        scale groups, named by ``units``), so no group is cut between two ranks."""
        part = self.split(size, what)
        share = part.stop - part.start
        if share % unit:
            raise LayoutError(
                f"{what} ({size}) gives {share} per rank across {self.tp} ranks, which cuts {units}; "
                f"split the experts whole (--ep) or use fewer ranks"
            )
        return part

    def kv_heads(self, kv_heads: int, heads: int) -> slice:
        """The key/value heads this rank keeps: its share, or the one its query heads read."""
        if kv_heads >= self.tp:
            return self.split(kv_heads, "key/value heads")
        self.split(heads, "attention heads")
        if self.tp % kv_heads:
            raise LayoutError(f"{kv_heads} key/value heads cannot be shared evenly by {self.tp} ranks")
        first_query = self.rank * (heads // self.tp)
        head = first_query // (heads // kv_heads)
        return slice(head, head + 1)

    def vocab(self, vocab: int) -> slice:
        """This rank's rows of the embedding and LM head (the last share may be shorter)."""
        share = -(-vocab // self.tp)
        return slice(min(self.rank * share, vocab), min((self.rank + 1) * share, vocab))
