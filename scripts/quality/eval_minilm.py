#!/usr/bin/env python3
"""Embedding similarity of all-MiniLM-L6-v2 with dequantized weights against the original.

Sentences: the first --sentences sentences of /usr/share/common-licenses (texts.evaluation_sentences).
For each --weights file (LABEL=PATH, e.g. from `nvfp4 dequantize --dtype f32`), prints the mean and
minimum cosine similarity of each sentence's embedding to the original model's, and the
nearest-neighbour agreement (fraction of sentences whose most similar other sentence is the same
as with the original model).

Usage: eval_minilm.py MODEL_DIR --weights rtn=PATH --weights mse=PATH [--sentences 500]
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texts  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--weights", action="append", default=[])
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--json", help="append results to this JSON-lines file")
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sentences = texts.evaluation_sentences(args.sentences)
    model = SentenceTransformer(args.model, device="cpu")
    inner = model[0].auto_model
    original = {k: v.clone() for k, v in inner.state_dict().items()}

    def embed():
        return torch.nn.functional.normalize(
            model.encode(sentences, convert_to_tensor=True, batch_size=64, normalize_embeddings=False).float(), dim=1)

    def neighbours(e):
        sim = e @ e.T
        sim.fill_diagonal_(-2)
        return sim.argmax(dim=1)

    reference = embed()
    ref_nn = neighbours(reference)
    for spec in args.weights:
        label, _, path = spec.rpartition("=")
        inner.load_state_dict(original)
        state = inner.state_dict()
        replaced = 0
        for name, tensor in load_file(path).items():
            if name not in state:
                continue  # buffers the checkpoint carries but the model does not persist (position_ids)
            if not torch.equal(tensor.float(), original[name].float()):
                replaced += 1
            state[name].copy_(tensor.float())
        e = embed()
        cos = (e * reference).sum(dim=1)
        agree = float((neighbours(e) == ref_nn).float().mean())
        print(f"{label}\tcos mean {float(cos.mean()):.5f}\tmin {float(cos.min()):.5f}\tNN agreement {agree:.4f}"
              f"\t(replaced {replaced} tensors, {len(sentences)} sentences)", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"model": "minilm", "label": label, "cos_mean": float(cos.mean()),
                                    "cos_min": float(cos.min()), "nn_agreement": agree, "replaced": replaced,
                                    "sentences": len(sentences)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
