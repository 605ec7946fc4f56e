"""``codeagent bench grammar`` at the smallest size: the tiny model's valid-call shares, the
engine comparison's llguidance rows and the mask fill replay, all on a vocabulary trained here."""

from __future__ import annotations

from codeagent.backend.chat.prompt import chat_prompt
from codeagent.backend.runtime import chat_model
from codeagent.bench.grammar import SCHEMAS, fill_s_per_step, valid_share
from codeagent.bench.grammar_engines import compare_engines
from codeagent.bench.grammar_vocab import model_folder


def test_grammar_bench_pieces(tmp_path):
    folder = model_folder(tmp_path / "tiny", 512, "tiny")
    shares = valid_share(folder, seeds=1)
    assert set(shares["constrained"]["per_schema"]) == set(SCHEMAS)
    assert shares["constrained"]["valid"] + shares["constrained"]["invalid_cut_by_max_tokens"] == 1.0
    assert shares["free"]["valid"] <= shares["constrained"]["valid"]
    engines = compare_engines(folder / "tokenizer.json")
    assert engines["vocab"] == 512 and engines["llguidance"]["tool"]["mask_mean_us"] > 0
    model = chat_model(folder)
    grammar = model.grammar(
        chat_prompt(model, [{"role": "user", "content": "hi"}], [], response_format={}).grammar
    )
    reply = model.tokenizer.encode('{"a": 1}')
    assert fill_s_per_step(grammar, [reply, reply]) > 0
