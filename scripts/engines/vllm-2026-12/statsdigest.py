#!/usr/bin/env python3
"""Per-tensor trace and Frobenius norm of a statistics file, plus its metadata (to compare with the workstation's)."""
import json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], "pt") as f:
    meta = f.metadata()
    out = {k: [float(f.get_tensor(k).double().trace()), float(f.get_tensor(k).double().norm())] for k in f.keys()}
print(json.dumps({"metadata": meta, "tensors": out}))
