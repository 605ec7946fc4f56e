"""Model architectures, one module or subpackage per family (``qwen3_moe``, ``deepseek_v4/``), the
contract they meet (``base``) and the registry keyed by ``architectures``."""
