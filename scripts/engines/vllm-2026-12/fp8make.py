#!/usr/bin/env python3
"""Make a DeepSeek-style block-FP8 copy of a bf16 Llama folder: every linear weight of the decoder layers
(q/k/v/o, gate/up/down) becomes F8_E4M3 with `<weight>_scale_inv` F32 [ceil(N/128), ceil(K/128)] =
block amax / 448 (DeepSeek's weight_quant: w / s, s = amax/448); config.json gets
quantization_config {quant_method fp8, fmt e4m3, weight_block_size [128,128], activation_scheme dynamic}.
Usage: fp8make.py BF16_DIR OUT_DIR"""
import json, math, os, shutil, sys
import torch
from safetensors.torch import load_file, save_file

src, dst = sys.argv[1], sys.argv[2]
B = 128
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
os.makedirs(dst, exist_ok=True)
sd = load_file(os.path.join(src, "model.safetensors"))
out, n_fp8 = {}, 0
for name, w in sd.items():
    parts = name.split(".")
    if name.endswith(".weight") and w.dim() == 2 and len(parts) >= 2 and parts[-2] in LINEAR:
        N, K = w.shape
        bn, bk = math.ceil(N / B), math.ceil(K / B)
        wf = torch.zeros(bn * B, bk * B, dtype=torch.float32)
        wf[:N, :K] = w.float()
        blocks = wf.view(bn, B, bk, B).abs().amax(dim=(1, 3))  # [bn, bk]
        scale = blocks / 448.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        full = scale.repeat_interleave(B, 0).repeat_interleave(B, 1)[:N, :K]
        q = (w.float() / full).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
        assert not torch.isnan(q.float()).any(), name
        out[name] = q.contiguous()
        out[name + "_scale_inv"] = scale.contiguous()
        n_fp8 += 1
    else:
        out[name] = w.contiguous()
save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
cfg = json.load(open(os.path.join(src, "config.json")))
cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [B, B],
                              "activation_scheme": "dynamic"}
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
for f in os.listdir(src):
    if f not in ("model.safetensors", "config.json"):
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))
# relative error of the FP8 weights against bf16 (the FP8 step's own loss)
errs = []
for name in list(out)[:]:
    if name.endswith("_scale_inv"):
        wn = name[:-len("_scale_inv")]
        q, s = out[wn].float(), out[name]
        N, K = q.shape
        full = s.repeat_interleave(B, 0).repeat_interleave(B, 1)[:N, :K]
        errs.append(((q * full - sd[wn].float()).norm() / sd[wn].float().norm()).item())
print(json.dumps({"fp8_weights": n_fp8, "mean_rel_err": sum(errs) / len(errs), "max_rel_err": max(errs)}))
