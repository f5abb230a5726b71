#!/usr/bin/env python3
"""Merge statistics files of one model into one (an experiment, docs/quality.md "round 4").

Writes the token-weighted mean of the moments, H = Σ T_i H_i / Σ T_i, of files written by
collect_statistics.py for the same model, so that moments from several calibration texts or
slices act as one larger calibration set. The output holds the first file's tensors and
shared_inputs (a module that another file lists as shared is read from the tensor holding it
there); the metadata is the first file's, with "tokens" the sum and "calibration" listing every
file's.

Usage:
  merge_statistics.py OUT.safetensors IN.safetensors IN.safetensors [...]
"""
import argparse
import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args()
    if len(args.inputs) < 2:
        ap.error("give at least two input files")
    sums, metadata, calibrations, total = {}, None, [], 0
    for path in args.inputs:
        with safe_open(path, "pt") as f:
            meta = dict(f.metadata() or {})
            if meta.get("format") != "nvfp4-statistics":
                raise SystemExit(f"error: {path}: not a statistics file (metadata format nvfp4-statistics)")
            tokens = int(meta["tokens"])
            shared = json.loads(meta.get("shared_inputs", "{}"))
            if metadata is None:
                metadata, names = meta, list(f.keys())
            for name in names:  # the first file's tensors; a module another file lists as shared is read there
                held = shared.get(name, name)
                if held not in f.keys():
                    raise SystemExit(f"error: {path}: no moments for {name} (another model?)")
                h = f.get_tensor(held).double() * tokens
                if name in sums and sums[name].shape != h.shape:
                    raise SystemExit(f"error: {path}: {name} is {list(h.shape)}, {list(sums[name].shape)} before")
                sums[name] = sums[name] + h if name in sums else h
            calibrations.append(f"{os.path.basename(path)}: {meta.get('calibration', '?')}")
            total += tokens
    metadata["tokens"] = str(total)
    metadata["calibration"] = "merged: " + "; ".join(calibrations)
    tensors = {name: (h / total).float().contiguous() for name, h in sums.items()}
    save_file(tensors, args.output + ".tmp", metadata=metadata)
    os.replace(args.output + ".tmp", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
