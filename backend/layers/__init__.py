"""Building blocks shared by the model families: norms, rotary embeddings, attention,
mixture-of-experts, linear layers. Each picks a Triton kernel on CUDA and its torch
reference elsewhere (kernels arrive with their own issue; today every path is torch)."""
