"""``codeagent bench first-light``: the runtime's first run on a GPU, prepared on CPU, in one command.

A lent GPU comes for minutes (15 of device time per session, its start included), so
everything it should measure runs as one command that cannot stop half-way: each stage
is a child process (``python -m ...``: its GPU memory is freed when it ends) with its own
time budget; a stage that fails or overruns is recorded (its status, exit code, the tail
of its log) and the next one starts. Stages, in order (``stages.py``):

1. ``kernel-tests``: ``pytest tests/kernels`` (on CUDA the suite runs the kernels on the
   GPU: its conftest picks CUDA when torch sees it and sets no interpreter), through a
   plugin that writes each result as it comes (``kernel_tests.py``);
2. ``kernels``: ``bench kernels`` at Qwen3-Coder-30B-A3B's and DeepSeek-V4-Flash's shapes;
3. ``gpu-qwen3-coder``: ``bench gpu --config qwen3-coder-30b-a3b --random-weights``, decode
   at batch 1/8/32 and context 1K/32K, prefill 8K, a follow-up on a cached 100K prefix;
4. ``gpu-vs-transformers``: the batch-1 decode cell again beside transformers on the same
   random configuration (not run, with the reason, where transformers is not installed);
5. ``gpu-deepseek-v4-flash``: V4-Flash cut to the layers that fit (``--layers fit``);
6. ``gpu-qwen3-next``: Qwen3-Next-80B-A3B cut to the layers that fit.

Every result is a JSON file in the output folder (``$OUT`` on the device machine, at most
8 files: the six stages', ``summary.json`` and ``first-light.log``); ``summary.json`` is
rewritten after each stage, so a run cut short still says how far it got, and ends with
the targets of issue 23 (``targets.py``), each met, missed or not run. The parent never
imports torch (it would hold a CUDA context through every stage). ``--tiny`` runs every
stage for real at tiny shapes on the CPU (a few tests, Triton's interpreter, tiny
configurations): the same files, so the GPU run cannot fail on a typo.

Limits: stages run one after the other, so a stage that overruns costs later ones only
what it was promised (``run.py``); timings are single runs; the targets apply to the full
run on an H100 or H200, and a tiny run's verdicts mean nothing.
"""
