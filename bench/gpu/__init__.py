"""``codeagent bench gpu --config NAME --random-weights``: a released MoE configuration, full size, on one device.

The model is built on the device with random weights (``bench/random_weights.py``: no
checkpoint, no host copy) and served by the engine (paged KV pool, prefix cache,
continuous batching). In the same run, after ours is freed, transformers builds the same
configuration, also random, on the same device as the reference
(``reference.py``). The weights of the two differ; speed does not depend on
their values, only on routing, which is about uniform for both. Scenarios:

- ``decode``: total tokens/s of B concurrent sequences (1, 8, 32, 64) at contexts of 1K,
  32K and 128K tokens, over ``--decode-tokens`` steps after every sequence has its first
  token. The B sequences share their context but its last partial block through the
  prefix cache (one prefill and one copy in the pool, so 64 x 128K fits), and each
  attends over its whole context: a step's work is that of B distinct contexts. Against
  the bandwidth roofline (``bench/roofline.py``: bytes a step must read at the
  midpoint context, over a measured device-to-device copy) and transformers.
- ``prefill``: tokens/s of one fresh prompt of 8K and 32K tokens (time to first token),
  with its FLOPs against the device's bf16 dense peak (known for H100 and H200 by name).
- ``prefix``: time to first token of a follow-up turn (a 500-token message) on a
  100K-token prefix: cold (nothing cached) and warm (another follow-up to the same prefix
  went before, so its blocks are in the pool).

Cells that cannot fit the KV pool are skipped with the reason. A model cut to fewer
layers (``--layers N``, or ``--layers fit``: as many as the device holds; for DeepSeek-V4-Flash's
13 GB bf16 layers and Qwen3-Next-80B-A3B's 160 GB) also reports
full-depth estimates: tokens/s x layers kept / layers released, which assumes the cut's
layers cost what the average layer does (the first layers of V4 are window and
hash-routed ones, cheaper than average: the estimate flatters). ``--tiny`` runs the same
family at tiny shapes and sizes (a check of the harness on a CPU; its timings mean
nothing). Targets (issue 9) are reported met or not for every run and apply to
Qwen3-Coder-30B-A3B on an H100 or H200.

Modules: ``plan`` (the validated arguments, sizes and device facts every side reads),
``ours`` (our engine), ``reference`` (transformers), ``report`` (the figures beside
figures, the targets, the table) and ``run`` (the whole run, in that order). Each side
imports ``plan`` only, so the imports form no circle.
"""
