#!/usr/bin/env python3
"""Tune the normalization weights of a quantized model to match the original (an experiment,
docs/quality.md "round 4").

The quantized linears stay as they are (codes and scales unchanged); only the RMSNorm/LayerNorm
weights (and LayerNorm biases), tensors the checkpoint keeps unquantized, are trained (Adam) so
that the model with the dequantized linears of QUANT (`nvfp4 dequantize --dtype f32` of an nvfp4
output) reproduces the original model: a causal LM's next-token distribution (loss = KL(original ‖
quantized) per token), an encoder's last hidden states (mean squared error), over the calibration
tokens (texts.py: the same calibration text as collect_statistics.py, never the evaluation text).
Tuning can fit the calibration text rather than the original model (on SmolLM2 the loss on
windows kept out of training rises from the first epoch on, and so does the KL to the original on
the evaluation text, though perplexity there falls: docs/quality.md "round 4"), so the last
--holdout windows are kept out of training and the norms of the step with the lowest loss on them
are written: the original norms when no step helps.
Writes the tuned norm tensors, in the checkpoint's dtype, to OUT; `nvfp4 quantize` of a checkpoint
whose norm tensors are replaced by them writes the same quantized linears with the tuned norms.

QUANT_DEQUANT may be a folder (every *.safetensors file in it is read). Memory: the original and
the quantized model in fp32, (causal LM) the original's log-probabilities over the calibration
tokens (tokens × vocabulary × 4 bytes: 3.2 GB for SmolLM2's 16,384 tokens) and one batch's
backward pass: 9.4 GiB peak for SmolLM2, 542 s on two cores.

Usage:
  tune_norms.py MODEL_DIR QUANT_DEQUANT.safetensors OUT.safetensors [--epochs 4] [--lr 1e-3] [--holdout 4]
                [--kind auto|causal-lm|encoder] [--write-model DIR]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texts  # noqa: E402
from weights import KIND_HELP, model_loader, substitute, write_replaced  # noqa: E402


def norm_parameters(model):
    """(name, parameter) of every normalization weight and bias: modules whose class name ends in Norm."""
    out = []
    for module_name, module in model.named_modules():
        if type(module).__name__.endswith("Norm"):
            out += [(f"{module_name}.{kind}", p) for kind in ("weight", "bias")
                    if isinstance(p := getattr(module, kind, None), torch.nn.Parameter)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("quantized")
    ap.add_argument("out")
    ap.add_argument("--kind", choices=["auto", "causal-lm", "encoder"], default="auto",
                    help=KIND_HELP)
    ap.add_argument("--text", choices=["docstrings", "prose"], default="docstrings",
                    help="calibration text (texts.py), as collect_statistics.py --text")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4, help="at most this many passes over the training windows")
    ap.add_argument("--holdout", type=int, default=4, metavar="N",
                    help="the last N calibration windows are not trained on; after every step the loss on them "
                         "is measured, and the norms of the step with the lowest held-out loss are written")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--write-model", metavar="DIR",
                    help="also write a copy of MODEL_DIR with the tuned tensors in place (a new folder) for "
                         "`nvfp4 quantize`")
    args = ap.parse_args()
    if args.write_model and os.path.exists(args.write_model):
        ap.error(f"{args.write_model} exists")

    from transformers import AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    args.kind, loader = model_loader(args.model, args.kind)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    teacher = loader.from_pretrained(args.model, dtype=torch.float32).eval()
    student = loader.from_pretrained(args.model, dtype=torch.float32).eval()
    dtype = getattr(torch, config.get("dtype") or config.get("torch_dtype") or "float32")
    print(f"{args.quantized}: {substitute(student, args.quantized)} tensors substituted", file=sys.stderr)
    for p in student.parameters():
        p.requires_grad_(False)
    norms = norm_parameters(student)
    for _, p in norms:
        p.requires_grad_(True)

    ids = tokenizer(" ".join(texts.calibration_sentences(100000, args.text)), return_tensors="pt")["input_ids"][0]
    window = min(args.window, config.get("max_position_embeddings", args.window))
    count = min(args.windows, ids.numel() // window)
    if not 0 < args.holdout < count:
        ap.error(f"--holdout must be between 1 and {count - 1} windows")
    windows = ids[:count * window].reshape(count, window)
    held, windows, count = windows[count - args.holdout:], windows[:count - args.holdout], count - args.holdout

    def output(model, batch):
        """Causal LM: next-token log-probabilities; encoder: the last hidden states."""
        if args.kind == "causal-lm":
            return F.log_softmax(model(input_ids=batch, use_cache=False).logits.float(), dim=-1)
        return model(input_ids=batch).last_hidden_state

    def loss_of(got, target):
        """KL(original ‖ quantized) per token, or the mean squared hidden-state error."""
        if args.kind == "causal-lm":
            return F.kl_div(got.flatten(0, 1), target.flatten(0, 1), log_target=True, reduction="batchmean")
        return F.mse_loss(got, target)
    batches = [windows[i:i + args.batch] for i in range(0, count, args.batch)]
    held_batches = [held[i:i + args.batch] for i in range(0, len(held), args.batch)]
    with torch.no_grad():  # the original's outputs, once (causal LM: tokens × vocabulary × 4 bytes)
        targets = [output(teacher, b) for b in batches]
        held_targets = [output(teacher, b) for b in held_batches]
    del teacher

    def held_loss() -> float:
        with torch.no_grad():
            return sum(float(loss_of(output(student, b), t)) * b.shape[0] for b, t in zip(held_batches, held_targets)) / len(held)

    best = (held_loss(), 0, {name: p.detach().clone() for name, p in norms})
    print(f"step 0: held-out loss {best[0]:.6f}", file=sys.stderr, flush=True)
    optimizer = torch.optim.Adam([p for _, p in norms], lr=args.lr)
    step = 0
    for epoch in range(args.epochs):
        total = 0.0
        for batch, target in zip(batches, targets):
            loss = loss_of(output(student, batch), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.shape[0]
            step += 1
            h = held_loss()
            if h < best[0]:
                best = (h, step, {name: p.detach().clone() for name, p in norms})
        print(f"epoch {epoch + 1}: mean loss {total / count:.6f}, held-out {h:.6f}", file=sys.stderr, flush=True)
    print(f"step {best[1]} of {step} kept: held-out loss {best[0]:.6f}", file=sys.stderr, flush=True)
    tensors = {name: p.to(dtype).contiguous() for name, p in best[2].items()}
    save_file(tensors, args.out + ".tmp", metadata={"format": "nvfp4-tuned-norms", "quantized": os.path.abspath(args.quantized)})
    os.replace(args.out + ".tmp", args.out)
    print(f"{args.out}: {len(tensors)} norm tensors", file=sys.stderr)
    if args.write_model:
        write_replaced(args.model, tensors, args.write_model)
        print(f"{args.write_model}: {args.model} with the tuned norm tensors", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
