"""``codeagent bench kernels``: each Triton kernel against its torch reference, per model shape.

Shapes are Qwen3-Coder-30B-A3B's and DeepSeek-V4-Flash's (bf16; V4's experts also as
released, FP4), at 1, 8, 64 and 512 tokens; attention at 4K, 32K and 128K tokens of
context (decode of 1 and 8 sequences, a 512-token prefill chunk after the rest cached;
V4: window plus top-k entries chosen among context/4, and the indexer over them). Per
kernel and shape: median time (CUDA events), bytes moved and FLOPs by a simple model
(each weight, cached row and activation touched once), achieved bandwidth and FLOP/s,
their fraction of an H100 SXM's peaks (3.35 TB/s, 989 TFLOP/s dense bf16) and of the
bandwidth of a device-to-device copy measured in the same run (the practical ceiling),
and the speed-up over the torch reference the layers run without Triton.

Times are of warm caches (inputs that fit L2 stay there between repetitions: small
kernels look faster than a model step would see them). Without a GPU the command
refuses, unless ``--tiny``: tiny shapes through Triton's CPU interpreter, which checks
the harness and nothing else (its timings say nothing about kernels).

Modules: ``cases`` (the model shapes and one ``Case`` per kernel and shape: the Triton
call, its torch reference, bytes and FLOPs), ``run`` (timing each case, the report and
its table, ``--tune``), ``tune`` (the fused MoE's tile sweep).
"""
