#!/usr/bin/env bash
# Quantizes a checkpoint inside a memory cgroup much smaller than the file (page cache included),
# to show that `nvfp4 quantize` needs neither RAM the size of the model nor the whole file cached,
# and that the output is byte-identical to an unlimited run.
#
#   scripts/bench/memory-limit.sh CHECKPOINT [LIMIT_MIB=128] [NVFP4=.build/release/nvfp4]
#
# Needs root and a writable cgroup memory controller (v1 or v2). Prints the limit, the cgroup's
# peak usage, the wall time of both runs and whether the outputs are identical.
set -euo pipefail
input=${1:?usage: memory-limit.sh CHECKPOINT [LIMIT_MIB] [NVFP4]}
limit_mib=${2:-128}
tool=${3:-.build/release/nvfp4}
work=$(mktemp -d)
group=nvfp4-memory-limit-$$
trap 'rm -rf "$work"; rmdir "$cg" 2>/dev/null || true' EXIT

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then          # cgroup v2
  cg=/sys/fs/cgroup/$group
  mkdir "$cg"
  echo $((limit_mib << 20)) > "$cg/memory.max"
  peak_file=$cg/memory.peak
else                                                        # cgroup v1
  cg=/sys/fs/cgroup/memory/$group
  mkdir "$cg"
  echo $((limit_mib << 20)) > "$cg/memory.limit_in_bytes"
  peak_file=$cg/memory.max_usage_in_bytes
fi

start=$(date +%s.%N)
"$tool" quantize "$input" -o "$work/free.safetensors" -q
free_s=$(echo "$(date +%s.%N) - $start" | bc)

start=$(date +%s.%N)
bash -c "echo \$\$ > '$cg/cgroup.procs'; exec '$tool' quantize '$input' -o '$work/limited.safetensors' -q"
limited_s=$(echo "$(date +%s.%N) - $start" | bc)

size_mib=$(( $(stat -c %s "$input") >> 20 ))
peak_mib=$(( $(cat "$peak_file" 2>/dev/null || echo 0) >> 20 ))
echo "input: $size_mib MiB; cgroup limit: $limit_mib MiB; cgroup peak (page cache included): $peak_mib MiB"
echo "unlimited: ${free_s} s; limited: ${limited_s} s"
if cmp -s "$work/free.safetensors" "$work/limited.safetensors"; then echo "outputs identical"; else echo "OUTPUTS DIFFER"; exit 1; fi
