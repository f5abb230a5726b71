#!/usr/bin/env python3
"""Hand-run check that fused members' bytes are torchao's own quantization with the shared scale.

    nvfp4 quantize /work/models/smollm2-bf16 -o /tmp/smol-mo-cpu --format modelopt --numerics cpu
    python scripts/engines/check_shared_scales.py [ORIGINAL_SAFETENSORS] [MODELOPT_SAFETENSORS]

For every q/k/v and gate/up member of SmolLM2's 30 layers it quantizes the original weight with
torchao's `NVFP4Tensor.to_nvfp4(w, per_tensor_scale=<the folder's weight_scale_2>)` (row-major
scales, CPU) and compares qdata and scales with the folder's `weight` and `weight_scale`.
Needs torch and torchao (0.18 used).
"""
import sys
import torch
from safetensors import safe_open
from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor
src = safe_open(sys.argv[1] if len(sys.argv) > 1 else '/work/models/smollm2-bf16/model.safetensors', 'pt')
out = safe_open(sys.argv[2] if len(sys.argv) > 2 else '/tmp/smol-mo-cpu/model.safetensors', 'pt')
checked = same = 0
for layer in range(30):
    for group in (['q_proj','k_proj','v_proj'], ['gate_proj','up_proj']):
        for leaf in group:
            sub = 'self_attn' if leaf.endswith(('q_proj','k_proj','v_proj')) else 'mlp'
            m = f'model.layers.{layer}.{sub}.{leaf}'
            w = src.get_tensor(m + '.weight')
            pts = out.get_tensor(m + '.weight_scale_2')
            ref = NVFP4Tensor.to_nvfp4(w, per_tensor_scale=pts, is_swizzled_scales=False, use_triton_kernel=False)
            ok = torch.equal(ref.qdata, out.get_tensor(m + '.weight')) and torch.equal(ref.scale.view(torch.uint8), out.get_tensor(m + '.weight_scale').view(torch.uint8))
            checked += 1; same += ok
print(f'fused members equal to torchao to_nvfp4(w, per_tensor_scale=shared weight_scale_2): {same}/{checked}')
