#!/usr/bin/env bash
# Peak memory and time of every command on a million-tensor file (issue 13: "memory for a
# million-tensor header stays <= 256 MiB anonymous"), for one or two builds side by side.
#
#   scripts/bench/big-header.sh [NVFP4=.build/release/nvfp4] [BASELINE_NVFP4] [COUNT=1000000]
#
# Makes the input with scripts/bench/many_tensors.py (cached in $TMPDIR), then runs quantize in
# each layout, inspect, check and verify under /usr/bin/time -v and prints, per command and build:
# exit status, peak RSS, the peak of anonymous memory (RssAnon sampled from /proc every 20 ms;
# RSS counts the input's mapped pages too) and wall time. Outputs are compared byte for byte
# between the two builds.
set -euo pipefail
tool=${1:-.build/release/nvfp4}
baseline=${2:-}
count=${3:-1000000}
dir=${TMPDIR:-/tmp}/nvfp4-big-header
mkdir -p "$dir"
input=$dir/m$count.safetensors
[ -f "$input" ] || python3 "$(dirname "$0")/many_tensors.py" "$input" "$count"

# run LABEL TOOL ARGS...: one line of figures.
run() {
  local label=$1 bin=$2; shift 2
  local log=$dir/time.log peak=0 anon status
  /usr/bin/time -v -o "$log" "$bin" "$@" >/dev/null 2>"$dir/stderr" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    local child
    child=$(pgrep -P "$pid" | head -1 || true)
    if [ -n "$child" ] && anon=$(awk '/^RssAnon/ {print $2}' "/proc/$child/status" 2>/dev/null) && [ -n "$anon" ]; then
      [ "$anon" -gt "$peak" ] && peak=$anon
    fi
    sleep 0.02
  done
  wait "$pid" && status=0 || status=$?
  local rss wall
  rss=$(awk '/Maximum resident/ {print $NF}' "$log")
  wall=$(awk '/Elapsed \(wall/ {print $NF}' "$log")
  printf '%-34s %-9s exit %-3s peak RSS %6d MiB  peak anon %6d MiB  wall %s\n' "$label" "$(basename "$(dirname "$(dirname "$bin")")")/$(basename "$(dirname "$bin")")" \
    "$(tail -1 "$log" | awk '{print $NF}')" $((rss / 1024)) $((peak / 1024)) "$wall"
  [ "$(tail -1 "$log" | awk '{print $NF}')" = 0 ] || head -c 300 "$dir/stderr"
}

builds=("$tool")
[ -n "$baseline" ] && builds+=("$baseline")
for format in ${FORMATS:-modelopt compressed-tensors torchao}; do
  for bin in "${builds[@]}"; do
    tag=$(echo "$bin" | md5sum | cut -c1-6)
    run "quantize --format $format" "$bin" quantize "$input" --format "$format" -o "$dir/out-$format-$tag.safetensors" --force -q
  done
  if [ -n "$baseline" ]; then
    ta=$(echo "$tool" | md5sum | cut -c1-6) tb=$(echo "$baseline" | md5sum | cut -c1-6)
    a=$dir/out-$format-$ta.safetensors b=$dir/out-$format-$tb.safetensors
    # The manifests name their own output paths: compare them with the baseline's tag replaced.
    # (A refused run writes nothing: there is nothing to compare.)
    if [ ! -e "$a" ] && [ ! -e "$b" ]; then echo "  neither build wrote an output"; continue; fi
    cmp -s "$a" "$b" && cmp -s "${a%.safetensors}.manifest.json" <(sed "s/out-$format-$tb/out-$format-$ta/g" "${b%.safetensors}.manifest.json") \
      && echo "  outputs and manifests identical" || echo "  OUTPUTS DIFFER"
  fi
done
out=$dir/out-modelopt-$(echo "$tool" | md5sum | cut -c1-6).safetensors
for bin in "${builds[@]}"; do run "inspect (input)" "$bin" inspect "$input"; done
for bin in "${builds[@]}"; do run "check (output)" "$bin" check "$out"; done
for bin in "${builds[@]}"; do run "verify (input vs output)" "$bin" verify "$input" "$out"; done
