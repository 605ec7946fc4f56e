"""A follower rank's process: load this rank's share of the model, then follow rank 0.

``python -m codeagent.backend.distributed.worker FOLDER DTYPE DEVICE TP RANK [--ep]`` is how
``launch.start`` runs each follower; ``serve_as_follower`` is the same for a rank that
``torchrun`` started with the user's command line. Exit status 0 after rank 0's ``Stop``,
1 with a one-line reason on stderr otherwise (a load error, rank 0 gone).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from codeagent.backend.distributed.group import join
from codeagent.backend.distributed.launch import rank_device
from codeagent.backend.distributed.layout import Layout
from codeagent.backend.distributed.runner import GroupFailed, follow
from codeagent.backend.loader import LoadError, load_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def serve_as_follower(folder: Path, dtype: str, device: str, layout: Layout, local_rank: int) -> int:
    local = rank_device(device, local_rank)
    try:
        group = join(layout, local)
    except RuntimeError as err:
        print(f"rank {layout.rank}: could not join the group: {err}", file=sys.stderr)
        return 1
    try:
        model = load_model(folder, DTYPES[dtype], str(local), group).model
        follow(model, group, local)
    except (LoadError, GroupFailed, RuntimeError) as err:
        print(f"rank {layout.rank}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        group.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codeagent-rank")
    parser.add_argument("folder", type=Path)
    parser.add_argument("dtype", choices=sorted(DTYPES))
    parser.add_argument("device")
    parser.add_argument("tp", type=int)
    parser.add_argument("rank", type=int)
    parser.add_argument("--ep", action="store_true")
    args = parser.parse_args(argv)
    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return serve_as_follower(
        args.folder, args.dtype, args.device, Layout(args.tp, args.ep, args.rank), args.rank
    )


if __name__ == "__main__":
    sys.exit(main())
