"""Model architectures, one file per family, and the registry keyed by ``architectures``."""
