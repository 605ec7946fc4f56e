"""Grammars compiled for a vocabulary, one matcher per sequence, and the step's token masks.

``GrammarVocabulary`` wraps the model's ``tokenizer.json`` for llguidance once per model (about
0.8 s for a 150K vocabulary; the tiny test vocabularies take milliseconds), with the model's
end-of-sequence ids: a matcher allows them exactly where the grammar may end. ``compile``
checks a grammar once (a bad schema is a ``GrammarError`` that says why) and caches it by text,
so an agent that offers the same tools every turn compiles them once. ``Grammar.matcher()`` is
a sequence's own parser state: the engine makes one when the sequence starts, fills its mask
before each sample and feeds it every sampled token; rollback is there for whoever needs it.

``StepMasks`` is one step's masks. With ``overlap`` (the runner's choice on a GPU, where the
forward pass leaves the host's cores idle) ``start`` launches the fill for the step's
constrained rows on a worker thread, llguidance's executor spreading the sequences over its
own threads with the GIL dropped, so it runs while the forward pass does; without it (on a
CPU, whose cores the forward pass already uses) each row is filled in turn on the caller's
thread: measured on 2 cores (``codeagent bench grammar``), a worker thread and the executor's
pool only compete with torch's threads. ``apply`` joins the fill and sets every disallowed
logit of those rows to -inf (tokens past the tokenizer's vocabulary, where a model's head is
wider, too). Rows without a grammar are untouched: a batch mixes constrained and free
sequences.

Limits: masks are computed on the CPU and copied to the logits' device; a matcher that reaches
an error state (it cannot, under its own masks) stops constraining its sequence.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol

import llguidance
import torch

CACHED_GRAMMARS = 64


class GrammarError(ValueError):
    """A grammar (a tool schema, a response format) llguidance cannot compile."""


class TokenizerSource(Protocol):
    """``chat.tokenizer.Tokenizer``, by shape."""

    inner: Any
    eos_token_ids: set[int]


class Grammar:
    """A checked grammar for one vocabulary; ``matcher()`` starts a sequence's parse."""

    def __init__(self, vocabulary: GrammarVocabulary, text: str, compiled: str) -> None:
        self.vocabulary, self.text, self.compiled = vocabulary, text, compiled

    def matcher(self) -> SequenceMatcher:
        parser = llguidance.LLMatcher(self.vocabulary.tokenizer, self.compiled, log_level=0)
        return SequenceMatcher(parser, self.vocabulary.size)


class SequenceMatcher:
    """One sequence's parse: llguidance's matcher and the width of its masks in tokens."""

    __slots__ = ("parser", "vocab_size")

    def __init__(self, parser: llguidance.LLMatcher, vocab_size: int) -> None:
        self.parser, self.vocab_size = parser, vocab_size

    def consume(self, token: int) -> bool:
        """Feed a sampled token; False when the parse is (now) in its error state."""
        return bool(self.parser.consume_token(token)) and not self.parser.is_error()

    def rollback(self, tokens: int) -> None:
        self.parser.rollback(tokens)

    def allows(self, token: int) -> bool:
        return self.parser.validate_tokens([token]) == 1


class GrammarVocabulary:
    def __init__(self, tokenizer: TokenizerSource) -> None:
        eos = sorted(tokenizer.eos_token_ids)
        self.tokenizer = llguidance.LLTokenizer(tokenizer.inner.to_str(), eos_token=eos or None)
        self.size = self.tokenizer.vocab_size
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Grammar] = OrderedDict()

    def compile(self, lark: str) -> Grammar:
        with self._lock:
            if lark in self._cache:
                self._cache.move_to_end(lark)
                return self._cache[lark]
        compiled = llguidance.LLMatcher.grammar_from_lark(lark)
        problem = llguidance.LLMatcher.validate_grammar(compiled, self.tokenizer)
        if problem and not problem.startswith("WARNING"):
            raise GrammarError(f"the reply's grammar does not compile: {problem.strip()}")
        grammar = Grammar(self, lark, compiled)
        with self._lock:
            self._cache[lark] = grammar
            while len(self._cache) > CACHED_GRAMMARS:
                self._cache.popitem(last=False)
        return grammar


class StepMasks:
    """The masks of one step's constrained rows, filled on a worker while the forward runs."""

    _executor: llguidance.LLExecutor | None = None

    def __init__(self, rows: list[tuple[int, SequenceMatcher]], words: int) -> None:
        self.rows = rows  # (row in the step's sampled logits, its sequence's matcher)
        self.bits = torch.zeros((len(rows), words), dtype=torch.int32)
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, rows: list[tuple[int, SequenceMatcher]], overlap: bool = True) -> StepMasks | None:
        if not rows:
            return None
        masks = cls(rows, (max(matcher.vocab_size for _, matcher in rows) + 31) // 32)
        if not overlap:
            masks._fill_in_turn()
        else:
            masks._thread = threading.Thread(target=masks._fill, name="grammar-masks", daemon=True)
            masks._thread.start()
        return masks

    def _fill_in_turn(self) -> None:
        words = self.bits.shape[1]
        for index, (_, matcher) in enumerate(self.rows):
            matcher.parser.unsafe_compute_mask_ptr(self.bits[index].data_ptr(), words * 4)

    def _fill(self) -> None:
        if StepMasks._executor is None:
            StepMasks._executor = llguidance.LLExecutor()
        pairs = [(matcher.parser, index) for index, (_, matcher) in enumerate(self.rows)]
        words = self.bits.shape[1]
        StepMasks._executor.unsafe_compute_mask_ptr(pairs, self.bits.data_ptr(), words * 4, len(pairs))

    def apply(self, logits: torch.Tensor) -> None:
        """Set the disallowed logits of the constrained rows to -inf, in place. logits [N, V]."""
        if self._thread is not None:
            self._thread.join()
        shifts = torch.arange(32, dtype=torch.int32)
        allowed = ((self.bits.unsqueeze(-1) >> shifts) & 1).bool().flatten(1)  # [R, words * 32]
        width = logits.shape[-1]
        if allowed.shape[1] < width:
            allowed = torch.nn.functional.pad(allowed, (0, width - allowed.shape[1]), value=False)
        rows = torch.tensor([row for row, _ in self.rows], device=logits.device)
        picked = logits.index_select(0, rows)
        picked.masked_fill_(~allowed[:, :width].to(logits.device), float("-inf"))
        logits.index_copy_(0, rows, picked)
