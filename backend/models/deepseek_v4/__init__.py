"""DeepSeek-V4 (``DeepseekV4ForCausalLM``): mHC residual streams, hybrid compressed attention,
sqrt-softplus MoE with hash-routed first layers. Token-exact against transformers' full
forward in float32 (wherever no exactly tied indexer score straddles the top-k cut; see
``attention``), and one-token decoding gives the same logits as prefill.

One module per concept: ``config`` (config.json in either spelling), ``weights`` (names,
shapes, storage dtypes), ``loading`` (a checkpoint into them, the release's FP8/FP4 format
included), ``shares`` (what one rank of a split model holds and reads), ``rope`` and ``norm`` (the
family's interleaved YaRN rotary and weight-first norms), ``mhc`` (hyper-connections),
``attention`` (sliding window plus compressed entries over one latent), ``compressor`` and
``indexer`` (the entries and the Lightning indexer that ranks them), ``moe`` (routing and
experts, packed FP4/FP8 experts decoded per expert), ``model`` (layers, state, forward).
"""
