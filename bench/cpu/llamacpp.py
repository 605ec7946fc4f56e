"""llama.cpp's side of ``bench cpu``: a llama.cpp source tree built with cmake, driven by its tools.

The tree (``--llama-cpp DIR``) must hold ``convert_hf_to_gguf.py`` and ``gguf-py/`` (its
converter and GGUF library) and, in ``DIR/build/bin``, ``llama-bench``, ``llama-batched-bench``
and ``llama-quantize`` (``llama-completion`` too for the greedy check, or ``llama-simple``;
without either that check is skipped). ``find_tree`` refuses anything else with one line
saying what to build (docs/bench/llama-cpp.md has the whole recipe).

- Conversion: our bf16 checkpoint through the tree's own converter, ``--outtype bf16``, then
  ``llama-quantize`` to Q8_0, Q4_K_M (or F32 from the checkpoint). The converter checks the
  tokenizer's pre-tokenizer against a list of hashes of released ones; the bench's tokenizer
  is not on it, so the converter runs with that lookup answering ``gpt-2`` (``vocab.py``).
  Files are cached beside the checkpoint, per llama.cpp commit (``gguf/<commit>/``).
- ``llama-bench -o json``: batch-1 decode (``-n``, from an empty context), then prefill
  (``-p``) in a second run, ``-r`` repetitions each, with ``-t`` threads; the bandwidth is
  read again just before the decode, since a shared host's bandwidth drifts over minutes.
- ``llama-batched-bench --output-format jsonl``: ``-npl 8`` sequences of ``-npp`` prompt
  tokens each, then ``-ntg`` tokens decoded for all eight together (``S_TG``).
- ``llama-completion`` (or ``llama-simple``): greedy tokens of a text prompt, printed as text
  (the bench's tokenizer makes every id readable back; ``report.common_prefix`` compares);
  for F32 with float32 keys and values and flash attention off, so that it computes what our
  float32 computes (with its defaults, f16 KV and flash attention, it parts from float32 at
  near-ties of 1e-4 that random weights put among 151,936 logits).
- Bytes per decoded token: from the GGUF's own tensor table (its quantized sizes), read with
  the tree's ``gguf-py`` in a child process.

Limits: llama.cpp's defaults are kept (mmap, batch 2048, micro-batch 512, f16 KV cache,
flash attention auto); a tool that fails is recorded with its last error line, not retried.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOLS = ("llama-bench", "llama-batched-bench", "llama-quantize")
QUANTS = ("bf16", "q8_0", "q4_k_m", "f32")
BUILD = (
    "cmake -S {dir} -B {dir}/build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF && cmake --build {dir}/build -j "
    "--target llama-bench llama-batched-bench llama-quantize llama-completion"
)
CONVERT = """
import runpy, sys
tree = sys.argv[1]
sys.path[:0] = [tree, tree + "/gguf-py"]
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = [tree + "/convert_hf_to_gguf.py", *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
TENSORS = """
import json, sys
sys.path.insert(0, sys.argv[1] + "/gguf-py")
from gguf import GGUFReader
print(json.dumps([[t.name, int(t.n_bytes), [int(x) for x in t.shape]] for t in GGUFReader(sys.argv[2]).tensors]))
"""


@dataclass(frozen=True, slots=True)
class Tree:
    root: Path
    commit: str

    @property
    def bin(self) -> Path:
        return self.root / "build" / "bin"

    def has(self, tool: str) -> bool:
        return (self.bin / tool).is_file()


def find_tree(root: Path) -> Tree:
    """The llama.cpp tree at ``root``, or RuntimeError saying what is missing and what to build."""
    root = root.expanduser().resolve()
    if not (root / "convert_hf_to_gguf.py").is_file() or not (root / "gguf-py").is_dir():
        raise RuntimeError(
            f"{root} is not a llama.cpp source tree (no convert_hf_to_gguf.py and gguf-py/); "
            "see docs/bench/llama-cpp.md"
        )
    missing = [t for t in TOOLS if not (root / "build" / "bin" / t).is_file()]
    if missing:
        raise RuntimeError(
            f"{root}/build/bin has no {', '.join(missing)}; build them: {BUILD.format(dir=root)}"
        )
    return Tree(root, _commit(root))


def _commit(root: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    info = root / "build" / "common" / "build-info.cpp"
    for line in info.read_text().splitlines() if info.is_file() else []:
        if "LLAMA_COMMIT" in line and '"' in line:
            return line.split('"')[1]
    return "unknown"


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a tool; RuntimeError with its last error line when it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{Path(command[0]).name} took over {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise RuntimeError(f"{Path(command[0]).name} failed: {lines[-1] if lines else done.returncode}")
    return done


def gguf_files(
    tree: Tree, checkpoint: Path, quants: tuple[str, ...], log: Callable[[str], None]
) -> dict[str, Path]:
    """Each of ``quants`` as a GGUF of the checkpoint, converted or quantized once and kept."""
    folder = checkpoint / "gguf" / tree.commit[:12]
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for quant in quants:
        path = folder / f"model-{quant.upper()}.gguf"
        if not path.is_file():
            partial = path.with_suffix(".partial")
            if quant in ("bf16", "f32"):
                log(f"llama.cpp: converting the checkpoint to {quant.upper()} GGUF")
                script = [sys.executable, "-c", CONVERT, str(tree.root), str(checkpoint)]
                _run([*script, "--outtype", quant, "--outfile", str(partial)], 7200)
            else:
                source = out.get("bf16") or gguf_files(tree, checkpoint, ("bf16",), log)["bf16"]
                log(f"llama.cpp: quantizing to {quant.upper()}")
                _run([str(tree.bin / "llama-quantize"), str(source), str(partial), quant.upper()], 7200)
            shutil.move(partial, path)
        out[quant] = path
    return out


def tensor_bytes(tree: Tree, gguf: Path) -> list[tuple[str, int, list[int]]]:
    """(name, bytes, GGUF shape) of every tensor in the file."""
    done = _run([sys.executable, "-c", TENSORS, str(tree.root), str(gguf)], 600)
    return [(name, size, shape) for name, size, shape in json.loads(done.stdout)]


def bench(
    tree: Tree, gguf: Path, threads: int, new: int, prefill: int, repeats: int, probe: Callable[[], float]
) -> dict[str, Any]:
    """llama-bench: batch-1 decode of ``new`` tokens (``probe``, the bandwidth, read just before it),
    then a prefill of ``prefill``, tokens/s each (two runs, so the decode stands next to its probe)."""
    command = [
        str(tree.bin / "llama-bench"),
        "-m",
        str(gguf),
        "-t",
        str(threads),
        "-r",
        str(repeats),
        "-o",
        "json",
    ]
    adjacent = probe()
    decode = json.loads(_run([*command, "-p", "0", "-n", str(new)], 7200).stdout)[0]
    fill = json.loads(_run([*command, "-p", str(prefill), "-n", "0"], 7200).stdout)[0]
    return {
        "batch1_decode_tokens_per_s": round(decode["avg_ts"], 3),
        "batch1_decode_stddev": round(decode["stddev_ts"], 3),
        "bandwidth_adjacent_GB_per_s": round(adjacent / 1e9, 2),
        "prefill_tokens": prefill,
        "prefill_tokens_per_s": round(fill["avg_ts"], 2),
        "threads": decode["n_threads"],
        "build_commit": decode.get("build_commit"),
        "repetitions": repeats,
    }


def decode_once(tree: Tree, gguf: Path, threads: int, new: int) -> float:
    """llama-bench's batch-1 decode of ``new`` tokens, one repetition (after its warm-up): tokens/s."""
    command = [str(tree.bin / "llama-bench"), "-m", str(gguf), "-t", str(threads), "-r", "1", "-o", "json"]
    return float(json.loads(_run([*command, "-p", "0", "-n", str(new)], 1800).stdout)[0]["avg_ts"])


def batched(tree: Tree, gguf: Path, threads: int, prompt: int, new: int, sequences: int) -> dict[str, Any]:
    """llama-batched-bench: ``sequences`` prompts prefilled, then decoded together."""
    command = [
        str(tree.bin / "llama-batched-bench"), "-m", str(gguf), "-t", str(threads), "-tb", str(threads),
        "-c", str(sequences * (prompt + new) + 64), "-npp", str(prompt), "-ntg", str(new),
        "-npl", str(sequences), "--output-format", "jsonl",
    ]  # fmt: skip
    done = _run(command, 7200)
    lines = [
        line for line in (done.stdout + "\n" + done.stderr).splitlines() if line.startswith('{"n_kv_max"')
    ]
    if not lines:
        raise RuntimeError("llama-batched-bench printed no result line")
    row = json.loads(lines[-1])
    return {
        "sequences": row["pl"],
        "decode_tokens_per_s": round(row["speed_tg"], 3),
        "tokens_per_s_incl_prefill": round(row["speed"], 3),
        "threads": row["n_threads"],
    }


def greedy_tool(tree: Tree) -> str | None:
    """The tool the greedy check runs: llama-completion (its precision can be set), else llama-simple."""
    return next((t for t in ("llama-completion", "llama-simple") if tree.has(t)), None)


def greedy_text(tree: Tree, gguf: Path, prompt: str, new: int, exact: bool, threads: int) -> str:
    """The text llama.cpp generates greedily after ``prompt`` (its echo of the prompt removed).

    ``exact`` (the F32 check): float32 keys and values and no flash attention, whose reduced
    precision parts near-ties that float32 keeps apart; otherwise llama.cpp's defaults."""
    tool = greedy_tool(tree)
    if tool is None:
        raise RuntimeError("neither llama-completion nor llama-simple is built")
    command = [str(tree.bin / tool), "-m", str(gguf), "-n", str(new)]
    if tool == "llama-completion":
        command += ["--temp", "0", "-no-cnv", "-t", str(threads), "-p", prompt]
        command += ["-ctk", "f32", "-ctv", "f32", "-fa", "off"] if exact else []
    else:
        command.append(prompt)
    text = _run(command, 1800).stdout.rstrip("\n")
    if not text.startswith(prompt):
        raise RuntimeError(f"{tool} echoed the prompt differently: {text[: len(prompt) + 20]!r}")
    return text[len(prompt) :]
