#!/usr/bin/env python3
"""Writes a bf16 safetensors file of COUNT tiny tensors (Python standard library only), the shape
of a huge MoE checkpoint's header without its data: per expert, one [16, 16] projection
(m.L.e.E.up_proj.weight, quantized) and SCALARS kept scalars (m.L.e.E.sN.bias), plus two [16]
norms per layer.

    python3 scripts/bench/many_tensors.py OUT.safetensors [COUNT=1000000] [SCALARS=19]

A million tensors give a ~70 MB header (the reader's limit is 100 MB) and outputs whose headers
stay under that limit in every layout. Used by scripts/bench/big-header.sh.
"""
import json
import random
import struct
import sys


def main():
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    scalars = int(sys.argv[3]) if len(sys.argv) > 3 else 19
    layers = max(1, count // 20_000)
    experts = max(1, (count - 2 * layers) // ((1 + scalars) * layers))
    rng = random.Random(13)
    # bf16 values in roughly [-2, 2]: sign, exponent 120..127, any mantissa.
    def bf16():
        return rng.getrandbits(1) << 15 | rng.randint(120, 127) << 7 | rng.getrandbits(7)
    matrix = struct.pack("<256H", *[bf16() for _ in range(256)])
    vector = struct.pack("<16H", *[0x3F80] * 16)
    scalar = struct.pack("<H", 0x3F80)
    entries = []
    offset = 0
    for layer in range(layers):
        for name in ("input_layernorm", "post_attention_layernorm"):
            entries.append((f"m.{layer}.{name}.weight", [16], vector))
        for expert in range(experts):
            entries.append((f"m.{layer}.e.{expert}.up_proj.weight", [16, 16], matrix))
            for b in range(scalars):
                entries.append((f"m.{layer}.e.{expert}.s{b}.bias", [], scalar))
    header = {}
    for name, shape, data in entries:
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, data in entries:
            f.write(data)
    print(f"{out}: {len(entries)} tensors, header {len(text)} bytes, data {offset} bytes")


if __name__ == "__main__":
    main()
