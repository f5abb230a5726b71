#!/usr/bin/env bash
# Installs what nvfp4 needs beyond Swift on a Debian/Ubuntu machine, when it is missing:
# git (SwiftPM fetches swift-crypto), libzstd-dev (the CZstd system-library target links
# libzstd through its pkg-config file) and the zstd command (used by the pipeline tests and README
# examples), plus zsh, fish and groff, which the tests of `nvfp4 completions` and `nvfp4 man` run.
# Safe to run repeatedly; uses sudo only when not root.
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
# SwiftPM reads libzstd.pc itself (no pkg-config binary needed); header, .pc and .so come together.
have_libzstd_dev() {
    [ -f /usr/include/zstd.h ] || return 1
    for pc in /usr/lib/*/pkgconfig/libzstd.pc /usr/lib/pkgconfig/libzstd.pc /usr/share/pkgconfig/libzstd.pc; do
        [ -f "$pc" ] && return 0
    done
    return 1
}
have_libzstd_dev || need+=(libzstd-dev)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
command -v groff >/dev/null 2>&1 || need+=(groff-base)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
