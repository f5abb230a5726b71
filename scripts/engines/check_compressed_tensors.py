#!/usr/bin/env python3
"""Hand-run engine check of `nvfp4 quantize MODEL_DIR --format ...` folders (not part of CI).

    python scripts/engines/check_compressed_tensors.py ORIGINAL CT_DIR [--modelopt MO_DIR] [--torchao AO_DIR]

1. Loads CT_DIR with transformers + the compressed-tensors library
   (`CompressedTensorsConfig(run_compressed=False)`: the library decompresses every
   `weight_packed`/`weight_scale`/`weight_global_scale` into a plain Linear weight) on CPU.
2. Checks that fused q/k/v and gate/up carry bit-identical `weight_global_scale` tensors.
3. With --modelopt: dequantizes the ModelOpt folder independently
   (e2m1(weight) * float(weight_scale) * weight_scale_2) and compares every weight with the
   compressed-tensors decompression.
4. With --torchao: dequantizes the torchao folder with torchao itself
   (unflatten_tensor_state_dict + NVFP4Tensor.dequantize), the bit-exact RTN baseline.
5. Perplexity (fp32 compute) on the files of /usr/share/common-licenses (sorted, joined with
   newlines), first 20,480 tokens, 1024-token windows, for the original and each quantized model.

Needs: torch, transformers, safetensors, compressed-tensors (and torchao for --torchao). Used with
transformers 5.24.0, torch 2.13.0+cpu, compressed-tensors 0.20.0, torchao 0.18.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

E2M1 = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=torch.float32)


def load_tensors(folder: str) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        with safe_open(path, "pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def plain_model(folder: str, state: dict[str, torch.Tensor]):
    """A float32 model of `folder`'s architecture with `state` loaded (quantization_config dropped)."""
    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    assert not missing and not unexpected, (missing[:5], unexpected[:5])
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    low = (packed & 0x0F).long()
    high = (packed >> 4).long()
    codes = torch.stack([low, high], dim=-1).reshape(packed.shape[0], packed.shape[1] * 2)
    return E2M1[codes]


def modelopt_dequantized(folder: str) -> dict[str, torch.Tensor]:
    tensors = load_tensors(folder)
    hf = json.load(open(os.path.join(folder, "hf_quant_config.json")))
    assert {"group_size", "kv_cache_quant_algo", "exclude_modules"} <= set(hf["quantization"]), hf
    out = {}
    for k, t in tensors.items():
        if k.endswith(".weight_scale") or k.endswith(".weight_scale_2") or k.endswith(".input_scale"):
            continue
        m = k[: -len(".weight")] if k.endswith(".weight") else None
        if m and f"{m}.weight_scale_2" in tensors:
            assert t.dtype == torch.uint8
            scale = tensors[f"{m}.weight_scale"].float().repeat_interleave(16, dim=1)
            out[k] = (unpack_e2m1(t) * scale * tensors[f"{m}.weight_scale_2"].float()).to(torch.bfloat16)
        else:
            out[k] = t
    return out


def torchao_dequantized(folder: str) -> dict[str, torch.Tensor]:
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        with safe_open(path, "pt") as f:
            metadata = f.metadata()
            flat = {k: f.get_tensor(k) for k in f.keys()}
        state, leftover = unflatten_tensor_state_dict(flat, metadata)
        assert not leftover, list(leftover)[:5]
        for k, v in state.items():
            out[k] = v.dequantize(torch.bfloat16) if hasattr(v, "qdata") else v
    return out


def check_fused_scales(folder: str) -> int:
    tensors = load_tensors(folder)
    groups = {}
    for k in tensors:
        if k.endswith(".weight_global_scale"):
            module = k[: -len(".weight_global_scale")]
            parent, leaf = module.rsplit(".", 1)
            key = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gu", "up_proj": "gu", "w1": "gu", "w3": "gu"}.get(leaf)
            if key:
                groups.setdefault((parent, key), []).append(tensors[k])
    for (parent, key), scales in groups.items():
        bits = {s.view(torch.int32).item() for s in scales}
        assert len(bits) == 1, f"{parent} {key}: global scales differ {scales}"
    return len(groups)


def perplexity(model, tokenizer, tokens: int = 20480, window: int = 1024) -> float:
    text = "\n".join(open(p, errors="replace").read() for p in sorted(glob.glob("/usr/share/common-licenses/*")) if os.path.isfile(p))
    ids = tokenizer(text, return_tensors="pt").input_ids[0][:tokens]
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.numel() - 1, window):
            chunk = ids[start : start + window].unsqueeze(0)
            if chunk.numel() < 2:
                break
            loss = model(chunk, labels=chunk).loss.item()
            nll += loss * (chunk.numel() - 1)
            count += chunk.numel() - 1
    return math.exp(nll / count)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("ct")
    ap.add_argument("--modelopt")
    ap.add_argument("--torchao")
    ap.add_argument("--tokens", type=int, default=20480)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = AutoTokenizer.from_pretrained(args.original)
    original = load_tensors(args.original)
    results = {}

    print(f"fused groups with bit-identical weight_global_scale: {check_fused_scales(args.ct)}")
    from transformers.utils.quantization_config import CompressedTensorsConfig
    ct_model = AutoModelForCausalLM.from_pretrained(
        args.ct, dtype=torch.bfloat16, quantization_config=CompressedTensorsConfig(run_compressed=False))
    ct_state = {k: v for k, v in ct_model.state_dict().items()}
    errors = []
    for k, v in original.items():
        if v.dim() == 2 and k in ct_state and "embed" not in k and "lm_head" not in k:
            a, b = v.float(), ct_state[k].float()
            errors.append(((a - b).norm() / a.norm()).item())
    print(f"compressed-tensors decompression: {len(errors)} weights, mean relative RMS error {sum(errors) / len(errors):.4f}")
    ct_model = ct_model.float().eval()
    results["compressed-tensors (transformers + compressed-tensors)"] = perplexity(ct_model, tokenizer, args.tokens)
    del ct_model

    if args.modelopt:
        mo = modelopt_dequantized(args.modelopt)
        worst = 0.0
        identical = 0
        for k, v in mo.items():
            if k in ct_state and v.dim() == 2:
                diff = (v.float() - ct_state[k].float()).abs().max().item()
                worst = max(worst, diff)
                identical += int(torch.equal(v, ct_state[k].to(v.dtype)))
        print(f"ModelOpt vs compressed-tensors dequantized weights: {identical} identical tensors, max |diff| {worst:g}")
        results["modelopt (independent dequantization)"] = perplexity(plain_model(args.original, mo), tokenizer, args.tokens)
    if args.torchao:
        results["torchao baseline (torchao dequantize)"] = perplexity(plain_model(args.original, torchao_dequantized(args.torchao)), tokenizer, args.tokens)
    results["original bf16"] = perplexity(plain_model(args.original, original), tokenizer, args.tokens)
    for name, ppl in results.items():
        print(f"perplexity {name}: {ppl:.3f}")


if __name__ == "__main__":
    main()
