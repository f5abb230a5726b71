#!/usr/bin/env python3
"""Loads an `nvfp4 quantize` output (any --method) with torchao's own reader and checks that
torchao's NVFP4Tensor.dequantize equals `nvfp4 dequantize` of the same file, bit for bit.

Usage: check_torchao_dequant.py QUANTIZED.safetensors DEQUANT.safetensors
  where DEQUANT was written by `nvfp4 dequantize QUANTIZED -o DEQUANT --dtype bf16`.
Exit 0 when every NVFP4 weight matches.
"""
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor
from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict


def main() -> int:
    quantized, dense = sys.argv[1], sys.argv[2]
    with safe_open(quantized, "pt") as f:
        metadata = f.metadata()
    state, leftover = unflatten_tensor_state_dict(load_file(quantized), metadata)
    if leftover:
        print(f"error: {len(leftover)} tensors left over: {sorted(leftover)[:3]}")
        return 1
    ours = load_file(dense)
    checked = 0
    for name, t in state.items():
        if isinstance(t, NVFP4Tensor):
            theirs = t.dequantize(torch.bfloat16)
            if not torch.equal(theirs.view(torch.int16), ours[name].view(torch.int16)):
                print(f"error: {name}: torchao's dequantize differs from nvfp4 dequantize")
                return 1
            checked += 1
    print(f"ok: {checked} NVFP4 weights dequantize identically in torchao")
    return 0 if checked else 1


if __name__ == "__main__":
    sys.exit(main())
