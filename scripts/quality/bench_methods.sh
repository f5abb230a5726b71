#!/usr/bin/env bash
# Wall and CPU time of `nvfp4 quantize --method mse` (and with --importance) against `--method rtn`
# on the same input, runs interleaved so that load on a shared machine hits both alike.
#
#   scripts/quality/bench_methods.sh INPUT.safetensors [RUNS] [IMPORTANCE.json]
#
# Prints the median of each and the ratios mse/rtn. Output goes to a temp folder, removed afterwards.
set -euo pipefail
IN=${1:?usage: bench_methods.sh INPUT.safetensors [RUNS] [IMPORTANCE.json]}
RUNS=${2:-5}
IMP=${3:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NVFP4=${NVFP4:-$ROOT/.build/release/nvfp4}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
methods=(rtn mse)
[ -n "$IMP" ] && methods+=(mse-imp)
for ((i = 0; i < RUNS; i++)); do
  for m in "${methods[@]}"; do
    case $m in
      rtn) args=(--method rtn) ;;
      mse) args=(--method mse) ;;
      mse-imp) args=(--method mse --importance "$IMP") ;;
    esac
    /usr/bin/time -f "$m %e %U %S" -a -o "$TMP/times" "$NVFP4" quantize "$IN" -o "$TMP/out.safetensors" "${args[@]}" --force -q
  done
done
python3 - "$TMP/times" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for m in dict.fromkeys(r[0] for r in rows):
    wall = statistics.median(float(r[1]) for r in rows if r[0] == m)
    cpu = statistics.median(float(r[2]) + float(r[3]) for r in rows if r[0] == m)
    med[m] = (wall, cpu)
    print(f"{m:8s} median wall {wall:.3f} s  cpu (user+sys) {cpu:.3f} s  ({sum(r[0] == m for r in rows)} runs)")
for m in med:
    if m != "rtn":
        print(f"{m}/rtn  wall x{med[m][0] / med['rtn'][0]:.2f}  cpu x{med[m][1] / med['rtn'][1]:.2f}")
PY
