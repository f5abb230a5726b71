#!/usr/bin/env python3
"""Writes an nvfp4-importance JSON file (collect_importance.py) of a Llama/Mistral/Qwen dense
model as a llama.cpp imatrix, in both formats: OUT.gguf (gguf-py's GGUFWriter, in the layout of
llama.cpp's tools/imatrix/imatrix.cpp `save_imatrix`: `<blk.N.leaf.weight>.in_sum2` = mean x
tokens, `.counts` = tokens) and OUT.dat (`save_imatrix_legacy`'s layout). Used for the
end-to-end check in docs/quality.md ("llama.cpp imatrix files"); the result also serves as
`llama-quantize --imatrix`.

    python3 -m venv /tmp/imxvenv && /tmp/imxvenv/bin/pip install gguf==0.19.0 numpy==2.4.6
    /tmp/imxvenv/bin/python scripts/quality/importance_to_imatrix.py stats.json OUT
"""
import json, struct, sys
import numpy as np, gguf
src, out = sys.argv[1], sys.argv[2]
doc = json.load(open(src))
tokens = int(doc.get("tokens") or 1000)
rev = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
       "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
entries = {}
for name, means in doc["modules"].items():
    if name == "lm_head":
        entries["output.weight"] = np.asarray(means, dtype=np.float32); continue
    p = name.split(".")
    leaf = ".".join(p[3:])
    if p[:2] == ["model", "layers"] and leaf in rev:
        entries[f"blk.{p[2]}.{rev[leaf]}.weight"] = np.asarray(means, dtype=np.float32)
w = gguf.GGUFWriter(out + ".gguf", arch=None)
w.add_type("imatrix"); w.add_array("imatrix.datasets", ["calibration"]); w.add_uint32("imatrix.chunk_count", tokens // 512); w.add_uint32("imatrix.chunk_size", 512)
for k in sorted(entries):
    w.add_tensor(k + ".in_sum2", (entries[k] * np.float32(tokens)).reshape(1, -1))
    w.add_tensor(k + ".counts", np.array([[tokens]], dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
ncall = (tokens + 511) // 512
with open(out + ".dat", "wb") as f:
    f.write(struct.pack("<i", len(entries)))
    for k in sorted(entries):
        v = (entries[k] * np.float32(ncall)).astype("<f4")
        f.write(struct.pack("<i", len(k)) + k.encode() + struct.pack("<ii", ncall, v.size) + v.tobytes())
    f.write(struct.pack("<i", ncall) + struct.pack("<i", 11) + b"calibration")
print(len(entries), "entries,", tokens, "tokens")
