#!/usr/bin/env python3
"""Perplexity of SmolLM2 (or any causal LM folder) with optionally replaced weights.

The text is /usr/share/common-licenses (texts.evaluation_text), tokenized once; the first
--tokens tokens are cut into non-overlapping --window-token windows, each scored independently
(labels = inputs, so window w contributes window-1 predictions). fp32 compute on the CPU.

Usage:
  eval_smollm2.py MODEL_DIR [--weights DEQUANT.safetensors ...] [--tokens 20480] [--window 1024]
Each --weights file (e.g. from `nvfp4 dequantize --dtype f32`) replaces the tensors it holds;
one line "label ppl" is printed per model, `original` first, and (unless --skip-original) the
mean KL(original ‖ model) per token over the same windows: how far the model moved from the
original, which perplexity alone does not say (a change can lower perplexity on this text while
moving away from the original). Memory: the original's log-probabilities, tokens × vocabulary × 4
bytes (4 GB for SmolLM2's 20,480 tokens).
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


def score(model, ids: torch.Tensor, window: int, reference=None, keep: bool = False):
    """(perplexity, KL(reference ‖ model) per token or None, this model's log-probabilities per
    window if `keep`, else [])."""
    import torch.nn.functional as F
    nll, count, kl, positions, logprobs = 0.0, 0, 0.0, 0, []
    with torch.no_grad():
        for w, start in enumerate(range(0, ids.numel() - window + 1, window)):
            chunk = ids[start:start + window].unsqueeze(0)
            lp = F.log_softmax(model(input_ids=chunk).logits.float(), dim=-1)[0]
            nll -= float(lp[:-1].gather(1, chunk[0, 1:, None]).sum())
            count += chunk.numel() - 1
            positions += chunk.numel()
            if reference is not None:
                kl += float((reference[w].exp() * (reference[w] - lp)).sum())
            if keep:
                logprobs.append(lp)
    return math.exp(nll / count), (kl / positions if reference is not None else None), logprobs


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
    reference = None
    for label, path in runs:
        model.load_state_dict(original)
        replaced = substitute(model, path) if path else 0
        ppl, kl, logprobs = score(model, ids, args.window, reference, keep=path is None)
        if path is None:
            reference = logprobs  # the original's, for KL(original ‖ quantized) of the rest
        shown = "" if kl is None else f"\tKL {kl:.5f}"
        print(f"{label}\t{ppl:.4f}{shown}\t(replaced {replaced} tensors, {ids.numel()} tokens, window {args.window})", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"model": "smollm2", "label": label, "ppl": ppl, "kl": kl, "replaced": replaced,
                                    "tokens": int(ids.numel()), "window": args.window}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
