#!/usr/bin/env bash
# First light on a GPU (issue 23): `codeagent bench first-light` in one run of at most 9 minutes,
# every result as JSON under $OUT (the device machine copies that folder back).
#
# The device machine has torch, triton, pytest and transformers but none of the agent's
# dependencies, and no network: nothing is installed. The checkout is made importable as the
# `codeagent` namespace package through a link (its package-dir maps codeagent -> the repo
# root), and the benches run through `python -m codeagent.bench`, which needs no CLI.
# Usage: bash scripts/gpu-first-light.sh [--tiny] [--stages A,B] [--budget S]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$repo/first-light}"
mkdir -p "$out"
pkg="$(mktemp -d "${TMPDIR:-/tmp}/codeagent-pkg.XXXXXX")"
ln -sfn "$repo" "$pkg/codeagent"
export PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset TRITON_INTERPRET CODEAGENT_KERNELS  # on CUDA the kernel tests must compile for the GPU
cd "$repo"
exec "${PYTHON:-python3}" -m codeagent.bench first-light --output-dir "$out" "$@"
