#!/usr/bin/env bash
# Background job on the device: unpack bf16 SmolLM2, collect statistics, quantize every output.
# Usage: quant.sh REPO_ROOT   (logs to /tmp/res/quant.log; touches /tmp/quant.done)
R=$1; E=/tmp/eng; M=/tmp/models; mkdir -p /tmp/res $M /tmp/nv
exec > /tmp/res/quant.log 2>&1
set -x
date -u +%T
tar xzf $E/nvfp4-0.1.0-linux-x86_64.tar.gz -C /tmp/nv; N=/tmp/nv/nvfp4-0.1.0-linux-x86_64/nvfp4
$N --version
cat /tmp/parts/bf16.txz.part-* | xz -d -T16 | tar -x -C /tmp
sha256sum /tmp/smollm2-bf16/model.safetensors
T0=$(date +%s.%N)
python3 $E/collect.py $R /tmp/smollm2-bf16 /tmp/stats.safetensors
echo "collect_s $(awk "BEGIN{print $(date +%s.%N) - $T0}")"
python3 $E/statsdigest.py /tmp/stats.safetensors > /tmp/res/stats_digest.json
q() { local t0=$(date +%s.%N); $N quantize "$@" --threads 16 --json > /tmp/res/q-$(basename ${3}).json; local rc=$?; echo "QUANT $3 rc=$rc s=$(awk "BEGIN{print $(date +%s.%N) - $t0}")"; }
for f in compressed-tensors modelopt; do
  q /tmp/smollm2-bf16 -o $M/rtn-$f --format $f
  q /tmp/smollm2-bf16 -o $M/gptq-$f --format $f --method gptq --statistics /tmp/stats.safetensors
done
python3 $E/fp8make.py /tmp/smollm2-bf16 /tmp/smollm2-fp8
for f in compressed-tensors modelopt; do q /tmp/smollm2-fp8 -o $M/fp8-$f --format $f; done
python3 $E/moemake.py /tmp/smollm2-bf16 /tmp/moe
for f in compressed-tensors modelopt; do q /tmp/moe -o $M/moe-$f --format $f; done
for d in $M/*; do echo "== $d"; ls -la $d; python3 -c "import json,sys;print(json.dumps(json.load(open(sys.argv[1])).get('quantization_config'))[:1500])" $d/config.json; done
for d in $M/*; do $N check $d > /tmp/res/check-$(basename $d).txt 2>&1; echo "CHECK $d rc=$?"; done
date -u +%T
touch /tmp/quant.done
