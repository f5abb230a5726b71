#!/usr/bin/env python3
"""Diagonal damping of a statistics file (an experiment, docs/quality.md "round 3").

Writes H' = H + ALPHA·diag(H) for every tensor of IN (a file of collect_statistics.py) to OUT, with
the same metadata plus "diagonal_damping": "ALPHA". diag(H') is diag(H) scaled by 1 + ALPHA, so the
column weights of `--method gptq`'s code search and its act-order order do not change; only the
off-diagonal coupling that error feedback uses is weakened (ALPHA → ∞: no feedback).

Usage:
  damp_statistics.py IN.safetensors OUT.safetensors ALPHA
"""
import argparse
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("alpha", type=float)
    args = ap.parse_args()
    if not args.alpha >= 0:
        ap.error("ALPHA must be a number ≥ 0")
    with safe_open(args.input, "pt") as f:
        metadata = dict(f.metadata() or {})
        if metadata.get("format") != "nvfp4-statistics":
            raise SystemExit(f"error: {args.input}: not a statistics file (metadata format nvfp4-statistics)")
        tensors = {}
        for name in f.keys():
            h = f.get_tensor(name).double()
            tensors[name] = (h + args.alpha * torch.diag(h.diagonal())).float().contiguous()
    metadata["diagonal_damping"] = str(args.alpha)
    save_file(tensors, args.output + ".tmp", metadata=metadata)
    os.replace(args.output + ".tmp", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
