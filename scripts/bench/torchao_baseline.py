#!/usr/bin/env python3
"""torchao on the CPU as a baseline for nvfp4-bench (run by hand; see README "Speed and memory").

    python scripts/bench/torchao_baseline.py IN.safetensors OUT.safetensors

Quantizes the same tensors `nvfp4 quantize` does by default (2-D `.weight` tensors with both
dimensions multiples of 16, except embeddings, lm_head and norms) with torchao's
NVFP4DynamicActivationNVFP4WeightConfig, one tensor at a time, and saves torchao's flattened layout.
Pinned versions: scripts/fixtures/requirements.txt.
"""
import sys
import time

import torch
from safetensors import safe_open
from safetensors.torch import save_file
import torchao.prototype.mx_formats.inference_workflow as iw
from torchao.prototype.mx_formats.inference_workflow import NVFP4DynamicActivationNVFP4WeightConfig
from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict
from torchao.quantization import quantize_

iw.is_sm_at_least_100 = lambda: True  # the weight quantization itself is plain PyTorch


def quantized(name, t):
    skip = ("embed", "lm_head", "norm", "mlp.gate.", "router")
    return (name.endswith(".weight") and t.ndim == 2 and t.shape[0] % 16 == 0 and t.shape[1] % 16 == 0
            and t.dtype in (torch.bfloat16, torch.float16, torch.float32) and not any(s in name for s in skip))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    start = time.time()
    state = {}
    with safe_open(src, "pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            if quantized(name, t):
                lin = torch.nn.Linear(t.shape[1], t.shape[0], bias=False, dtype=t.dtype)
                with torch.no_grad():
                    lin.weight.copy_(t)
                quantize_(lin, NVFP4DynamicActivationNVFP4WeightConfig(use_dynamic_per_tensor_scale=True))
                state[name] = lin.weight
            else:
                state[name] = t
    tensors, metadata = flatten_tensor_state_dict(state)
    save_file({k: v.contiguous() for k, v in tensors.items()}, dst, metadata=metadata)
    print(f"torchao: {time.time() - start:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
