"""KV-cache bookkeeping and storage: a preallocated pool of row tensors cut into fixed-size
blocks (``paged``), shared between sequences through a hash-chained prefix cache
(``blocks``), with a disk tier (``disk``); ``allocator`` gives sequences their blocks and
``tables`` describes one step's block tables for the attention kernels."""
