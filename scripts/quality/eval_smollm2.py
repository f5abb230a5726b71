#!/usr/bin/env python3
"""Perplexity of SmolLM2 (or any causal LM folder) with optionally replaced weights.

The text is /usr/share/common-licenses (texts.evaluation_text), tokenized once; the first
--tokens tokens are cut into non-overlapping --window-token windows, each scored independently
(labels = inputs, so window w contributes window-1 predictions). fp32 compute on the CPU.

Usage:
  eval_smollm2.py MODEL_DIR [--weights DEQUANT.safetensors ...] [--tokens 20480] [--window 1024]
Each --weights file (e.g. from `nvfp4 dequantize --dtype f32`) replaces the tensors it holds;
one line "label ppl" is printed per model, `original` first.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texts  # noqa: E402
from weights import substitute  # noqa: E402


def perplexity(model, ids: torch.Tensor, window: int) -> float:
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.numel() - window + 1, window):
            chunk = ids[start:start + window].unsqueeze(0)
            out = model(input_ids=chunk, labels=chunk)
            n = chunk.numel() - 1
            nll += float(out.loss) * n
            count += n
    return math.exp(nll / count)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--weights", action="append", default=[], help="LABEL=PATH or PATH")
    ap.add_argument("--tokens", type=int, default=20480)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--json", help="append results to this JSON-lines file")
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    ids = tokenizer(texts.evaluation_text(), return_tensors="pt")["input_ids"][0][:args.tokens]
    if ids.numel() < args.tokens:
        print(f"warning: only {ids.numel()} tokens", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    runs = [] if args.skip_original else [("original", None)]
    for spec in args.weights:
        label, _, path = spec.rpartition("=")
        runs.append((label or os.path.basename(path), path))
    for label, path in runs:
        model.load_state_dict(original)
        replaced = substitute(model, path) if path else 0
        ppl = perplexity(model, ids, args.window)
        print(f"{label}\t{ppl:.4f}\t(replaced {replaced} tensors, {ids.numel()} tokens, window {args.window})", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"model": "smollm2", "label": label, "ppl": ppl, "replaced": replaced,
                                    "tokens": int(ids.numel()), "window": args.window}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
