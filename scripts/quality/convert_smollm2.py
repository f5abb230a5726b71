#!/usr/bin/env python3
"""Convert SmolLM2-135M-Instruct from its GGUF (Q4_1 linears, Q8_0 embedding) to a bf16 Hugging Face folder.

Usage: convert_smollm2.py [GGUF] [DEST]
  GGUF defaults to /work/models/dl/SmolLM2-135M-Instruct.Q4_1.gguf, DEST to /work/models/smollm2-bf16.

Needs torch, transformers, accelerate and gguf (see docs/quality.md). transformers' GGUF loader
dequantizes the tensors and undoes llama.cpp's q/k row permutation; it refuses to save a
GGUF-loaded model, so the state dict is copied into a fresh LlamaForCausalLM. The folder is
written to a temporary directory beside DEST and renamed into place, so a reader never sees a
half-written folder; an existing DEST is left alone.
"""
import os
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM


def main() -> int:
    gguf = sys.argv[1] if len(sys.argv) > 1 else "/work/models/dl/SmolLM2-135M-Instruct.Q4_1.gguf"
    dest = sys.argv[2] if len(sys.argv) > 2 else "/work/models/smollm2-bf16"
    if os.path.exists(dest):
        print(f"{dest} already exists; nothing to do", file=sys.stderr)
        return 0
    folder, name = os.path.split(os.path.abspath(gguf))
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    config.torch_dtype = torch.bfloat16
    fresh = LlamaForCausalLM(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # The embedding is tied: lm_head.weight may be absent from one side.
    missing = [m for m in missing if m != "lm_head.weight"]
    unexpected = [u for u in unexpected if u != "lm_head.weight"]
    if missing or unexpected:
        print(f"error: state dict mismatch: missing {missing}, unexpected {unexpected}", file=sys.stderr)
        return 1
    fresh = fresh.to(torch.bfloat16)
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".smollm2-bf16.", dir=parent)
    fresh.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
