#!/usr/bin/env bash
# Background job: wait for the quantized models, then one vllm_eval.py process per model.
E=/tmp/eng; M=/tmp/models
exec > /tmp/res/eval.log 2>&1
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
while [ ! -f /tmp/quant.done ]; do sleep 2; done
for m in bf16=/tmp/smollm2-bf16 rtn-compressed-tensors gptq-compressed-tensors rtn-modelopt gptq-modelopt fp8-compressed-tensors fp8-modelopt moe-compressed-tensors moe-modelopt fp8-source=/tmp/smollm2-fp8; do
  name=${m%%=*}; dir=${m#*=}; [ "$dir" = "$m" ] && dir=$M/$m
  t0=$(date +%s); echo "EVAL $name start $(date -u +%T)"
  timeout 300 python3 $E/vllm_eval.py $dir --name $name --ids $E/ids.json --out /tmp/res/eval-$name.json > /tmp/res/eval-$name.log 2>&1
  echo "EVAL $name rc=$? s=$(( $(date +%s) - t0 ))"; tail -1 /tmp/res/eval-$name.log
done
touch /tmp/eval.done
