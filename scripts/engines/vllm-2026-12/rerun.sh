#!/usr/bin/env bash
# Second machine: bf16 reference (stale gguf quantization_config removed from a copy) and the MoE outputs.
E=/tmp/eng; M=/tmp/models; mkdir -p /tmp/res $M /tmp/nv; cd /tmp
exec > >(tee /tmp/res/rerun.log) 2>&1
set -x
tar xzf $E/nvfp4-0.1.0-linux-x86_64.tar.gz -C /tmp/nv; N=/tmp/nv/nvfp4-0.1.0-linux-x86_64/nvfp4
cat /tmp/parts/bf16.txz.part-* | xz -d -T16 | tar -x -C /tmp
cat /tmp/parts/whl.txz.part-* | xz -d -T16 | tar -x -C /tmp
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/engw/*.whl
rm -rf /tmp/site/openai /tmp/site/openai-*.dist-info /tmp/site/fastapi /tmp/site/fastapi-*.dist-info /tmp/site/starlette /tmp/site/starlette-*.dist-info
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $E/fix/*.whl
cp -r /tmp/smollm2-bf16 /tmp/smollm2ref
python3 -c "import json;p='/tmp/smollm2ref/config.json';c=json.load(open(p));print('removed',c.pop('quantization_config'));json.dump(c,open(p,'w'),indent=2)"
python3 $E/moemake.py /tmp/smollm2-bf16 /tmp/moe
for f in compressed-tensors modelopt; do $N quantize /tmp/moe -o $M/moe-$f --format $f --threads 16 --json > /tmp/res/q-moe-$f.json; echo "QUANT moe-$f rc=$?"; done
export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
for m in bf16=/tmp/smollm2ref moe-compressed-tensors moe-modelopt; do
  name=${m%%=*}; dir=${m#*=}; [ "$dir" = "$m" ] && dir=$M/$m
  t0=$(date +%s)
  timeout 240 python3 $E/vllm_eval.py $dir --name $name --ids $E/ids.json --out /tmp/res/eval-$name.json > /tmp/res/eval-$name.log 2>&1
  echo "EVAL $name rc=$? s=$(( $(date +%s) - t0 ))"; tail -1 /tmp/res/eval-$name.log
done
tar czf $OUT/rerun.tgz -C /tmp res
