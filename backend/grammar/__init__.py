"""Constrained decoding: replies decoded under a grammar built from the offered tools.

``tools_grammar.py`` writes the grammar of a reply (free text, or the family's call blocks
whose arguments fit the tools' JSON schemas; ``tool_choice``; ``response_format``) as
llguidance Lark text; ``matcher.py`` compiles it for the model's vocabulary, keeps one matcher
per sequence and fills the step's token masks while the forward pass runs. The runner
(``runner.py``) applies the masks to the logits before sampling; free sequences in the same
batch are untouched.

Why llguidance (1.9) and not XGrammar (0.2.9), measured on this machine (2 cores) along a
valid tool-call reply, one mask per token (``bench/grammar_engines.py``,
``docs/bench/grammar-engines-cpu.json``): on a 150K byte-level BPE vocabulary (Qwen3's size,
trained here on Python sources; Qwen's own is not available offline) llguidance took ~60-70 us
a token on average, XGrammar ~25-40 us; on the 414-token test vocabulary ~10-20 us against
~2-3 us. Both are two orders of magnitude under the 5 % of a decode step the feature may cost,
so the choice fell on what the engines need to install and can express:

- llguidance is one self-contained wheel with no dependencies; XGrammar requires torch,
  transformers, triton and apache-tvm-ffi at run time (transformers is only a test
  dependency of ours);
- our calls mix free text with Qwen3-Coder's XML, whose string values are raw text up to
  ``</parameter>``: llguidance's Lark has lazy lexemes and lexeme intersection/negation (text
  that never contains a marker), ``%json`` for the typed values and ``<[id]>`` for markers that
  are single added tokens; XGrammar's structural tags hold JSON bodies between fixed tags;
- grammar compilation is ~1-10 ms with llguidance against ~10-40 ms with XGrammar per new tool
  set (an agent's tools change rarely; both are cached);
- per-sequence matchers with rollback and a parallel batch fill that drops the GIL in both.
"""
