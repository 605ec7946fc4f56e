"""Clients for ``--attempts N`` (``fix`` and ``eval``): one per attempt, each with its own sampling.

``attempts.sampling_plan`` decides how each attempt samples (attempt 1 as a single run, the
others at ``--attempt-temperature`` with seed = attempt number); this module makes the clients:

- the embedded runtime: one model and engine for all, each attempt a view with its own
  temperature and seed (``EmbeddedClient.sampled``): the engine prefills their shared prompt
  once and batches their decoding;
- remote models: a client per attempt with the temperature (no seed: not every API has one),
  so the attempts are parallel requests;
- scripted models: ``scripted:A.jsonl,B.jsonl,C.jsonl`` gives attempt n the n-th file (one
  file: every attempt replays it); in ``eval``, ``scripted:DIR`` gives attempt n of a task
  ``DIR/<instance_id>.<n>.jsonl`` when it exists, else ``DIR/<instance_id>.jsonl``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeagent.agent.attempts import DEFAULT_TEMPERATURE, AttemptPlan, Sampling, sampling_plan
from codeagent.agent.clients import make_client
from codeagent.agent.protocol import ModelClient, ModelError
from codeagent.bench.argtypes import positive_float, positive_int

ClientFor = Callable[[int], ModelClient]


def plan(count: int, temperature: float, client_for: Callable[[Sampling, int], ModelClient]) -> AttemptPlan:
    sampling = sampling_plan(count, temperature)
    return AttemptPlan(count, lambda n: client_for(sampling[n - 1], n), sampling)


def scripts(spec: str, count: int) -> list[Path]:
    """The script files of ``scripted:A,B,...``: one, or one per attempt."""
    paths = [Path(part.strip()).expanduser() for part in spec.removeprefix("scripted:").split(",")]
    if len(paths) not in (1, count):
        raise ModelError(f"{len(paths)} scripts for {count} attempts: give one, or one per attempt")
    return paths


def sampled(shared: Any, spec: str, settings: dict[str, Any]) -> Callable[[Sampling, int], ModelClient]:
    """Attempt clients from a client of the model: the embedded one's views, or remote clients
    of ``spec`` with the attempt's temperature."""

    def client_for(sampling: Sampling, number: int) -> ModelClient:
        if sampling.temperature is None:
            return shared if number == 1 or hasattr(shared, "sampled") else make_client(spec, **settings)
        if hasattr(shared, "sampled"):
            return shared.sampled(sampling.temperature, sampling.seed)
        return make_client(spec, temperature=sampling.temperature, **settings)

    return client_for


def scripted(paths: list[Path]) -> Callable[[Sampling, int], ModelClient]:
    def client_for(sampling: Sampling, number: int) -> ModelClient:
        return make_client(f"scripted:{paths[(number - 1) % len(paths)]}")

    return client_for


def eval_script(folder: Path, instance_id: str, number: int) -> ModelClient:
    """Attempt ``number``'s script for a task in ``scripted:DIR``."""
    for name in (f"{instance_id}.{number}.jsonl", f"{instance_id}.jsonl"):
        if (folder / name).is_file():
            return make_client(f"scripted:{folder / name}")
    raise ModelError(f"no script for {instance_id} in {folder}")


def remote_settings(args: Any, config: Any) -> dict[str, Any]:
    """The endpoint settings the flags and the config give a remote client."""
    key_env = args.api_key_env or config.remote.api_key_env
    return {
        "base_url": args.base_url or config.remote.base_url,
        "api_key": os.environ.get(key_env) if key_env else None,
        "context_window": config.remote.context_window,
    }


def attempt_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--attempts N`` and ``--attempt-temperature T`` (``fix`` and ``eval``)."""
    parser.add_argument(
        "--attempts",
        type=positive_int,
        default=1,
        metavar="N",
        help="run N agents at once (own workspace, sandbox and seed each; the embedded model prefills their "
        "shared prompt once) and keep the one the tests prove best (default 1)",
    )
    parser.add_argument(
        "--attempt-temperature",
        type=positive_float,
        default=DEFAULT_TEMPERATURE,
        metavar="T",
        help=f"with --attempts: attempts 2..N sample at T with seed = attempt number; attempt 1 as a single "
        f"run (default {DEFAULT_TEMPERATURE})",
    )
