"""KV-cache bookkeeping: fixed-size blocks from a preallocated pool, shared between
sequences through a hash-chained prefix cache. Tensors live with the engine; this package
decides which block holds which tokens."""
