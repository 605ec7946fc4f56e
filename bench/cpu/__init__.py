"""``codeagent bench cpu``: our CPU decode, 8 sequences and prefill against llama.cpp, on a model
larger than any cache, each decode figure also a fraction of the memory-bandwidth roofline.

The model is a random Qwen3-MoE at Qwen3-30B-A3B's layer shapes with as many layers as
make it at least 4 GB in bf16 (``model``), written once to a reusable folder with a
tokenizer llama.cpp's converter accepts (``vocab``). In one run: the machine's streaming
read (``bandwidth``, before and after), our engine in each dtype asked (``ours``), and,
given a built llama.cpp tree, the same weights converted with its own converter to BF16,
Q8_0 and Q4_K_M and run through ``llama-bench``, ``llama-batched-bench`` and
``llama-completion`` with the same thread count (``llamacpp``); bytes per decoded token,
rooflines, the greedy-token check, the issue's targets and the table (``report``), in the
order ``run`` keeps.

Limits: our FP8 / FP4-expert rows are not run yet (their targets are None with the reason);
llama.cpp's figures come from its own tools with their defaults (``llamacpp``); one run of
each cell after a warm-up, on whatever machine this is (the JSON records it); ``--tiny``
checks the harness at toy sizes and its timings mean nothing.
"""
