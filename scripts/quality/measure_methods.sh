#!/usr/bin/env bash
# One table per causal LM: perplexity (evaluation text that calibration never sees), KL(original ‖
# method) per token on that text (eval_smollm2.py), weight error
# (quantized weights only), and quantize time / peak memory of each method against RTN; the last
# row, gptq-norms, is scripts/quality/best's pipeline (gptq, then tuned norms).
#
#   scripts/quality/measure_methods.sh MODEL_DIR OUT_DIR
#
# Needs a release build (NVFP4, default .build/release/nvfp4), a Python with torch, transformers
# and safetensors ($PYTHON, else python3) and GNU time (/usr/bin/time). Statistics are collected
# once into OUT_DIR (their time is not part of the method's time; files already there are reused).
# Python runs nice. TOKENS (default 20480) is the evaluation length passed to eval_smollm2.py.
set -euo pipefail
MODEL=${1:?usage: measure_methods.sh MODEL_DIR OUT_DIR}
OUT=${2:?usage: measure_methods.sh MODEL_DIR OUT_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NVFP4=${NVFP4:-$ROOT/.build/release/nvfp4}
PY=${PYTHON:-python3}
Q=$ROOT/scripts/quality
mkdir -p "$OUT"
src=$MODEL/model.safetensors
[ -f "$OUT/importance.json" ] || nice -n 10 "$PY" "$Q/collect_importance.py" "$MODEL" "$OUT/importance.json"
[ -f "$OUT/statistics.safetensors" ] || nice -n 10 "$PY" "$Q/collect_statistics.py" "$MODEL" "$OUT/statistics.safetensors"
weights=()
for method in rtn mse mse-imp gptq; do
  case $method in
    rtn) args=(--method rtn) ;;
    mse) args=(--method mse) ;;
    mse-imp) args=(--method mse --importance "$OUT/importance.json") ;;
    gptq) args=(--method gptq --statistics "$OUT/statistics.safetensors") ;;
  esac
  /usr/bin/time -f "%e %M" -o "$OUT/$method.time" "$NVFP4" quantize "$src" -o "$OUT/$method.safetensors" "${args[@]}" --force -q
  "$NVFP4" verify "$src" "$OUT/$method.safetensors" --json > "$OUT/$method.verify.json" || echo "verify $method: exit $?" >&2
  "$NVFP4" dequantize "$OUT/$method.safetensors" -o "$OUT/$method.dequant.safetensors" --dtype f32 --force -q
  weights+=(--weights "$method=$OUT/$method.dequant.safetensors")
done
# gptq + tuned norms (scripts/quality/best's pipeline after the statistics): tune the norms of the
# gptq output, quantize the tuned copy; its time is the gptq run's plus these steps'.
rm -rf "$OUT/tuned"
/usr/bin/time -f "%e %M" -o "$OUT/gptq-norms.tune.time" nice -n 10 "$PY" "$Q/tune_norms.py" "$MODEL" \
  "$OUT/gptq.dequant.safetensors" "$OUT/norms.safetensors" --write-model "$OUT/tuned"
/usr/bin/time -f "%e %M" -o "$OUT/gptq-norms.quantize.time" "$NVFP4" quantize "$OUT/tuned/model.safetensors" \
  -o "$OUT/gptq-norms.safetensors" --method gptq --statistics "$OUT/statistics.safetensors" --force -q
"$NVFP4" verify "$OUT/tuned/model.safetensors" "$OUT/gptq-norms.safetensors" --json > "$OUT/gptq-norms.verify.json" ||
  echo "verify gptq-norms (against the tuned copy): exit $?" >&2
"$NVFP4" dequantize "$OUT/gptq-norms.safetensors" -o "$OUT/gptq-norms.dequant.safetensors" --dtype f32 --force -q
cat "$OUT/gptq.time" "$OUT/gptq-norms.tune.time" "$OUT/gptq-norms.quantize.time" |
  awk '{ wall += $1; if ($2 > peak) peak = $2 } END { print wall, peak }' > "$OUT/gptq-norms.time"
weights+=(--weights "gptq-norms=$OUT/gptq-norms.dequant.safetensors")
: > "$OUT/ppl.jsonl"
nice -n 10 "$PY" "$Q/eval_smollm2.py" "$MODEL" "${weights[@]}" --tokens "${TOKENS:-20480}" --json "$OUT/ppl.jsonl" > "$OUT/ppl.txt"
"$PY" - "$OUT" "$MODEL" <<'PYEOF'
import json, math, sys
import torch
from safetensors.torch import load_file
out, model = sys.argv[1], sys.argv[2]
orig = load_file(f"{model}/model.safetensors")
ppl, kl = {}, {}
for line in open(f"{out}/ppl.jsonl"):
    r = json.loads(line); ppl[r["label"]] = r["ppl"]; kl[r["label"]] = r.get("kl")
base, rtn = ppl["original"], ppl["rtn"]
rtime = float(open(f"{out}/rtn.time").read().split()[0])
print(f"{'method':<10} {'ppl':>9} {'gap recovered':>14} {'KL':>8} {'weight SQNR':>12} {'wall s':>8} {'x rtn':>6} {'peak MiB':>9}")
print(f"{'original':<10} {base:9.4f}")
for m in ["rtn", "mse", "mse-imp", "gptq", "gptq-norms"]:
    deq = load_file(f"{out}/{m}.dequant.safetensors")
    sig = err = 0.0
    for name, t in deq.items():
        if name in orig and t.dim() == 2 and not torch.equal(t.float(), orig[name].float()):  # quantized weights only
            o = orig[name].double(); sig += float((o * o).sum()); err += float(((t.double() - o) ** 2).sum())
    sqnr = 10 * math.log10(sig / err) if err else float("inf")
    wall, peak = open(f"{out}/{m}.time").read().split()
    rec = (rtn - ppl[m]) / (rtn - base) * 100
    print(f"{m:<10} {ppl[m]:9.4f} {rec:13.1f}% {kl[m]:8.5f} {sqnr:11.2f}dB {float(wall):8.2f} {float(wall)/rtime:6.2f} {int(peak)/1024:9.0f}")
PYEOF
