#!/usr/bin/env bash
# Installs what nvfp4 needs beyond Swift on a Debian/Ubuntu machine, when it is missing.
# Today that is nothing but git (SwiftPM fetches swift-crypto); libzstd-dev joins this list
# when zstd support lands. Safe to run repeatedly.
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${need[@]}"
fi
