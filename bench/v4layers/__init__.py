"""``codeagent bench v4-layers``: DeepSeek-V4-Flash's layers at their real widths on CPU, each
layer's batch-1 decode against the time its bytes take at the memory bandwidth measured in the
same run, and a labelled estimate of the whole model's decode.

- ``model``: the released config cut to one layer of each kind (sliding window, compressed
  sparse with compressor and indexer, heavily compressed), random weights in the runtime's
  formats (FP4 routed experts, FP8 attention), no checkpoint;
- ``head``: the output head at the real vocabulary, timed apart;
- ``decode``: the prompt in chunks, batch-1 steps with each layer timed, cProfile per layer;
- ``reads``: the bytes a layer reads for a token, from the model's storage;
- ``report``: rooflines, the full-depth ESTIMATES (this machine, a server), targets, table;
- ``run``: the order of work; ``arguments``: flags and handler.

Limits: two or three layers stand for 43 (random routing, one context); the server figure
assumes its cores keep up with its memory; ``--tiny`` checks the harness only.
"""
