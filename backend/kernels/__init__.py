"""Triton kernels for the MoE runtime, each beside the torch reference it must match.

The layers (``layers/``, ``models/deepseek_v4_*``) call ``dispatch.use_triton(x)`` at their
hot function and, when it says so, the kernel entry point in ``ops``; otherwise their own
torch code runs, which is the reference the kernel is tested against (under Triton's
interpreter on CPU, on a GPU where there is one). ``CODEAGENT_KERNELS=auto|triton|torch``
chooses (``dispatch``).

Kernels: RMSNorm with the residual add (``norm``), rotary, rotate-half and interleaved
(``rotary``); the fused MoE (``moe_routing``, ``moe_align``, ``moe_gemm``, ``fused_moe``, with
FP8/FP4 expert weights decoded in the GEMM tiles and tile configs from ``tile_configs``,
tuned by ``codeagent bench kernels --tune``, in ``bench/kernels/``); paged attention over
the KV pool (``paged_attention``); DeepSeek-V4's sink attention over chosen latent entries,
indexer scores and top-k, compressor pooling and mHC weights (``sink_attention``,
``indexer``, ``compressor``, ``mhc``); sampling (``sampling``).

Limits: no kernel here has run on a GPU yet (no CUDA device where they were written);
importing this package imports neither Triton nor any kernel.
"""
