"""Triton kernels for the MoE runtime, each beside the torch reference it must match.

The layers (``layers/``, ``models/deepseek_v4_*``) call ``dispatch.use_triton(x)`` at their
hot function and, when it says so, the kernel entry point in ``ops``; otherwise their own
torch code runs, which is the reference the kernel is tested against (under Triton's
interpreter on CPU, on a GPU where there is one). ``CODEAGENT_KERNELS=auto|triton|torch``
chooses (``dispatch``).

What exists: RMSNorm (+ residual add), rotary (rotate-half and interleaved, partial),
the fused MoE (routing, expert sort and padding, grouped GEMMs with the activation fused,
combine with a shared expert; plain, FP8 and FP4 expert weights; tile configs from a
tuned table). Importing this package imports neither Triton nor any kernel.
"""
