"""Constrained decoding: replies decoded under a grammar built from the offered tools.

``tools_grammar.py`` writes the grammar of a reply (free text, or the family's call blocks
whose arguments fit the tools' JSON schemas; ``tool_choice``; ``response_format``) as
llguidance Lark text; ``matcher.py`` compiles it for the model's vocabulary, keeps one matcher
per sequence and fills the step's token masks (while the forward pass runs on a GPU, after it
on a CPU, where overlapping was measured to cost more than it saves). The runner
(``runner.py``) applies the masks to the logits before sampling; free sequences in the same
batch are untouched.

Why llguidance (1.9) and not XGrammar (0.2.9), measured on this machine (2 cores) along a
valid reply, one mask per token (``codeagent bench grammar``: ``bench/grammar_engines.py``,
``docs/bench/grammar-cpu.json``). On a 150K byte-level BPE vocabulary (Qwen3's size, trained
here on Python sources; Qwen's own is not available offline), a JSON-schema reply: llguidance
38 us a mask on average (median 24), XGrammar 44 (median 3); free text then a JSON call:
llguidance 89 (median 13, its first mask 2.4 ms), XGrammar 32 (median 2). On the 512-token
test vocabulary: 7-10 us against about 2. XGrammar's median is lower; both are well under
the 5 % of a decode step the feature may cost (the fill is 0.2 % of
the engine bench model's step at batch 1, 1 % at batch 8), so the choice fell on what the
engines need to install and can express, and on compile time:

- llguidance is one self-contained wheel with no dependencies; XGrammar requires torch,
  transformers, triton and apache-tvm-ffi at run time (transformers is only a test
  dependency of ours);
- our calls mix free text with Qwen3-Coder's XML, whose string values are raw text up to
  ``</parameter>``: llguidance's Lark has lazy lexemes and lexeme intersection/negation (text
  that never contains a marker), ``%json`` for the typed values and ``<[id]>`` for markers that
  are single added tokens; XGrammar's structural tags hold JSON bodies between fixed tags;
- compiling a grammar takes 1-2 ms with llguidance against 14-54 ms with XGrammar on the 150K
  vocabulary (a server compiles one per new tool set or schema; both are cached);
- per-sequence matchers with rollback and a parallel batch fill that drops the GIL in both.
"""
