"""``fix --attempts 3`` on the embedded tiny model: one engine serves the three agents, and
their shared first prompt (system, tools, the task) is prefilled once."""

from __future__ import annotations

from codeagent.agent.attempts import AttemptPlan, sampling_plan
from codeagent.agent.fix import FixOptions, start_fix
from codeagent.agent.issues import from_text
from codeagent.agent.loop import Limits
from codeagent.agent.run import RunConfig
from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.client import EmbeddedClient
from codeagent.sandbox.confine import probe

NO_TESTS = {"stats.py": "def mean(values):\n    return sum(values) / (len(values) - 1)\n"}


def test_three_attempts_prefill_their_shared_prompt_once(tiny_chat_model, make_repo):
    root = make_repo(NO_TESTS)
    client = EmbeddedClient(tiny_chat_model, max_new_tokens=6, cache=CacheConfig(block_size=16))
    sampling = sampling_plan(3)
    plan = AttemptPlan(
        3,
        lambda n: (
            client if n == 1 else client.sampled(sampling[n - 1].temperature or 0.0, sampling[n - 1].seed)
        ),
        sampling,
    )
    config = RunConfig(limits=Limits(max_steps=1), sandbox=probe() is None, repo_map=False)
    result = start_fix(
        from_text("mean() is wrong"), "tiny", plan.first, FixOptions(root, config, attempts=plan)
    )

    attempts = result.attempts
    assert attempts is not None and len(attempts["attempts"]) == 3
    prompts = {a["tokens"]["prompt"] for a in attempts["attempts"]}
    assert len(prompts) == 1  # one prompt, token for token: the workspace's path is not in it
    prompt = prompts.pop()
    shared = (prompt - 1) // 16 * 16  # every full block but the one holding the last token
    assert sorted(a["tokens"]["cached"] for a in attempts["attempts"]) == [0, shared, shared]
    assert client.engine.stats.prefill_tokens == prompt + 2 * (prompt - shared)
    assert result.tokens["cached"] == 2 * shared
    client.close()
