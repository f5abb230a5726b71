#!/usr/bin/env bash
# Fuzzes the safetensors header parser, the mapped and stream readers and the zstd decoder with
# libFuzzer for SECONDS seconds (default 60): scripts/fuzz.sh 600
#
# The harness (Fuzz/Sources/nvfp4-fuzz) is a package target only when NVFP4_FUZZ=1, built here
# with -sanitize=fuzzer in its own scratch folder (.build-fuzz), so plain `swift build` and
# `swift test` never see it. It is a debug build: Swift's bounds checks on unsafe buffers stay on.
# New inputs go to .build-fuzz/corpus (the committed seeds in Fuzz/corpus are read, not written);
# a crash or hang is saved under .build-fuzz/artifacts/ and the script exits non-zero. Turn each
# one into a regression test (Tests/NVFP4KitTests/FuzzRegressionTests.swift).
# Extra arguments after SECONDS go to libFuzzer (e.g. -jobs=2 -workers=2, -runs=1000000).
#
# NVFP4_FUZZ_TARGET=index|config|part|manifest|calibration|importance fuzzes that JSON file through
# the entry point that reads it instead (Fuzz/Sources/nvfp4-fuzz/JSONFuzzTargets.swift), with the
# seeds in Fuzz/corpus-json/<target> and its own corpus in .build-fuzz/corpus-<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
export NVFP4_FUZZ=1
# Swift's own crash backtracer would take the signal first: libFuzzer then saves no artifact.
export SWIFT_BACKTRACE=enable=no
swift build --scratch-path .build-fuzz --manifest-cache none --product nvfp4-fuzz
target="${NVFP4_FUZZ_TARGET:-}"
corpus=.build-fuzz/corpus${target:+-$target}
seeds=Fuzz/corpus${target:+-json/$target}
mkdir -p "$corpus" .build-fuzz/artifacts
exec .build-fuzz/debug/nvfp4-fuzz \
    -max_total_time="$seconds" -max_len=16384 -timeout=20 -rss_limit_mb=4096 \
    -artifact_prefix=.build-fuzz/artifacts/${target:+$target-} -print_final_stats=1 "$@" \
    "$corpus" "$seeds"
