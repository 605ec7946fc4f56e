"""Triton kernels for the MoE runtime, and native CPU kernels, each beside the torch reference
it must match.

``dispatch.choose`` picks, once when a model is built, which families run
(``CODEAGENT_KERNELS=auto|triton|native|torch``) and returns a ``Kernels`` that the model
hands to its layers (``layers/``, ``models/``); a layer calls the kernel entry point in
``ops`` (Triton) or ``native`` where the choice says so, and otherwise runs its own torch
code, which is the reference the kernel is tested against (under Triton's interpreter on
CPU, on a GPU where there is one). Kernels import nothing from the layers.

Kernels: RMSNorm with the residual add (``norm``), rotary, rotate-half and interleaved
(``rotary``); the fused MoE (``moe_routing``, ``moe_align``, ``moe_gemm``, ``fused_moe``, with
FP8/FP4 expert weights decoded in the GEMM tiles and tile configs from ``tile_configs``);
paged attention over the KV pool (``paged_attention``); DeepSeek-V4's sink attention over
chosen latent entries, indexer scores and top-k, compressor pooling and mHC weights
(``sink_attention``, ``indexer``, ``compressor``, ``mhc``); sampling (``sampling``); the
native CPU decode kernels (``native``, ``native.c``).

Limits: no kernel here has run on a GPU yet (no CUDA device where they were written);
importing this package imports neither Triton nor any kernel.
"""
