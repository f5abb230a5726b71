#!/usr/bin/env python3
"""Collect per-channel activation statistics for `nvfp4 quantize --method mse --importance`.

For every nn.Linear of a Hugging Face model, the mean over all tokens of the square of each input
channel's activation (what llama.cpp's imatrix collects) is written as
  {"format": "nvfp4-importance", "version": 1, "model": ..., "sentences": N, "tokens": T,
   "modules": {"<module name>": [m_0, ..., m_{K-1}]}}
Module names are the model's own (`model.layers.0.self_attn.q_proj`), which are the weight names
of its safetensors file without `.weight`.

Runs on the CPU in fp32. Calibration text: sentences from Python standard-library docstrings
(texts.py), never the evaluation text.

Usage:
  collect_importance.py MODEL_DIR OUT.json [--kind causal-lm|encoder] [--sentences 400] [--max-length 128]
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texts  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--kind", choices=["causal-lm", "encoder"], default="causal-lm")
    ap.add_argument("--sentences", type=int, default=400)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    loader = AutoModelForCausalLM if args.kind == "causal-lm" else AutoModel
    model = loader.from_pretrained(args.model, dtype=torch.float32).eval()

    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    mask_holder: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, inputs):
            x = inputs[0].detach().to(torch.float64)
            x = x.reshape(-1, x.shape[-1])
            mask = mask_holder.get("mask")
            if mask is not None and mask.numel() == x.shape[0]:
                x = x[mask]  # padding tokens carry no signal
            sums[name] = sums.get(name, 0) + (x * x).sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(hook(name))

    sentences = texts.calibration_sentences(args.sentences)
    tokens = 0
    with torch.no_grad():
        for i in range(0, len(sentences), args.batch):
            batch = tokenizer(sentences[i:i + args.batch], return_tensors="pt", padding=True,
                              truncation=True, max_length=args.max_length)
            mask_holder["mask"] = batch["attention_mask"].reshape(-1).bool()
            tokens += int(batch["attention_mask"].sum())
            model(**batch)
    modules = {name: [float(v) for v in (sums[name] / counts[name]).tolist()] for name in sorted(sums)}
    doc = {"format": "nvfp4-importance", "version": 1, "model": os.path.abspath(args.model),
           "sentences": len(sentences), "tokens": tokens, "modules": modules}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(modules)} linear modules, {len(sentences)} sentences, {tokens} tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
