#!/usr/bin/env python3
"""Collect input second moments for `nvfp4 quantize --method gptq --statistics FILE`.

For every distinct input of an nn.Linear of a Hugging Face model, H = E[x xᵀ] over all calibration
tokens (a K×K fp32 matrix; its diagonal is what collect_importance.py records) is written to a
safetensors file, one tensor per distinct input, named by the first module that reads it
(`model.layers.0.self_attn.q_proj`). Modules that read the same tensor (q/k/v, gate/up) are
detected by identity during the forward pass and listed in the metadata:

  __metadata__ = {"format": "nvfp4-statistics", "version": "1", "tokens": "T",
                  "shared_inputs": "{\"<module>\": \"<module holding the tensor>\", ...}",
                  "model": ..., "calibration": ...}

Calibration text: Python standard-library docstrings (texts.py), concatenated and cut into
--windows windows of --window tokens: never the evaluation text. Runs on the CPU; each batch's
XᵀX is an fp32 product, summed across batches in fp64, written as fp32. Memory: 8·K² bytes per distinct input while collecting.

Usage:
  collect_statistics.py MODEL_DIR OUT.safetensors [--kind auto|causal-lm|encoder] [--windows 32] [--window 512]
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
    ap.add_argument("--kind", choices=["auto", "causal-lm", "encoder"], default="auto",
                    help="auto: causal-lm when config.json's architectures name a *ForCausalLM, else encoder")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()

    from safetensors.torch import save_file
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    if args.kind == "auto":
        with open(os.path.join(args.model, "config.json")) as f:
            architectures = json.load(f).get("architectures") or []
        args.kind = "causal-lm" if any(a.endswith("ForCausalLM") for a in architectures) else "encoder"
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    loader = AutoModelForCausalLM if args.kind == "causal-lm" else AutoModel
    model = loader.from_pretrained(args.model, dtype=torch.float32).eval()

    text = " ".join(texts.calibration_sentences(100000))
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    window = min(args.window, getattr(model.config, "max_position_embeddings", args.window))
    count = min(args.windows, ids.numel() // window)
    if count == 0:
        raise SystemExit("error: not enough calibration text for one window")
    windows = ids[:count * window].reshape(count, window)

    sums: dict[str, torch.Tensor] = {}
    shared: dict[str, str] = {}
    last: dict[str, object] = {}  # the previous linear's input tensor (kept alive, so identity is exact)

    def hook(name):
        def record(module, inputs):
            x = inputs[0]  # the object itself: detach() would make a new one per call
            previous = last.get("tensor")
            if previous is not None and previous is x:
                shared[name] = shared.get(last["name"], last["name"])
                return
            last["tensor"], last["name"] = x, name
            if name in shared:
                raise SystemExit(f"error: module {name} shares its input in one batch but not in another")
            x = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
            sums[name] = sums.get(name, 0) + (x.T @ x).to(torch.float64)  # fp32 per batch, fp64 across batches
        return record

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(hook(name))

    tokens = 0
    with torch.no_grad():
        for i in range(0, count, args.batch):
            batch = windows[i:i + args.batch]
            last.clear()
            model(input_ids=batch)
            tokens += batch.numel()
    last.clear()
    tensors = {name: (s / tokens).to(torch.float32).contiguous() for name, s in sorted(sums.items())}
    metadata = {"format": "nvfp4-statistics", "version": "1", "tokens": str(tokens),
                "shared_inputs": json.dumps(shared, sort_keys=True), "model": os.path.abspath(args.model),
                "calibration": f"python docstrings, {count} windows of {window} tokens"}
    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(tensors)} inputs for {len(tensors) + len(shared)} linear modules, {tokens} tokens",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
