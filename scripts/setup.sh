#!/usr/bin/env bash
# Installs what nvfp4 needs beyond Swift on a Debian/Ubuntu machine, when it is missing:
# git (SwiftPM fetches swift-crypto), libzstd-dev (the CZstd system-library target links
# libzstd through pkg-config) and the zstd command (used by the pipeline tests and README
# examples). Safe to run repeatedly; uses sudo only when not root.
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
{ [ -f /usr/include/zstd.h ] && pkg-config --exists libzstd 2>/dev/null; } || need+=(libzstd-dev)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
