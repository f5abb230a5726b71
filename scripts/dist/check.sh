#!/usr/bin/env bash
# Checks what scripts/dist.sh left in dist/ (CI runs it after the test build):
#   - SHA256SUMS matches; the wheel's RECORD matches its files; the wheel's tag is the binary's glibc floor;
#   - Manifest.swift's version = the tarball's = the wheel's = `--version` of both installed binaries;
#   - `ldd` of the tarball's binary lists no library outside glibc, libstdc++ and libgcc_s;
#   - the tarball's binary and the `nvfp4` that `pip install` (offline, fresh venv) puts on PATH quantize
#     the Fixtures model with an empty environment (`env -i`) to the same bytes as REFERENCE;
#   - where root may unshare and chroot, again in a jail that holds only the binary and the libraries
#     ldd lists, where REFERENCE (toolchain-linked) must fail to start;
#   - `uv tool install` and `pipx install` of the wheel, when uv / pipx are on PATH.
# Usage: scripts/dist/check.sh REFERENCE_BINARY   (e.g. .build/debug/nvfp4 from `swift build`)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/dist/lib.sh

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: scripts/dist/check.sh REFERENCE_BINARY (an executable nvfp4 built by swift build)" >&2
    exit 2
fi
reference=$(readlink -f "$1")
fixture="$PWD/Fixtures/tiny-llama/model.safetensors"
failures=0
fail() { echo "dist check: FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "dist check: ok: $*"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

version=$(dist_source_version)
tarball="dist/$(dist_tarball_name "$version")"
wheels=(dist/nvfp4-*.whl)
if [ ! -f "$tarball" ] || [ ${#wheels[@]} -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
    echo "dist check: expected $tarball and one dist/nvfp4-*.whl for version $version; run scripts/dist.sh" >&2
    ls -l dist >&2 || true
    exit 1
fi
wheel=${wheels[0]}

(cd dist && sha256sum --quiet -c SHA256SUMS) && pass "SHA256SUMS" || fail "SHA256SUMS does not match dist/"

# The reference output: what the toolchain build writes.
# Each run writes out.safetensors and out.manifest.json in its own directory, so the manifests
# (which record the invocation) are comparable too.
mkdir "$work/reference"
(cd "$work/reference" && "$reference" quantize "$fixture" -o out.safetensors 2>/dev/null) || true
[ -s "$work/reference/out.safetensors" ] || { echo "dist check: $reference wrote no output" >&2; exit 1; }

# Runs binary $2 on the fixture with an empty environment and compares output and manifest with the
# reference's. Further arguments are a command prefix (e.g. a namespace that hides the toolchain).
same_bytes_as_reference() {
    local label=$1 binary=$2 dir="$work/run-$1"
    shift 2
    mkdir "$dir"
    if ! (cd "$dir" && "$@" env -i "$binary" quantize "$fixture" -o out.safetensors 2>stderr); then
        fail "$label: quantize exited non-zero: $(tail -1 "$dir/stderr")"
    elif ! cmp -s "$dir/out.safetensors" "$work/reference/out.safetensors"; then
        fail "$label: output differs from $reference's"
    elif ! cmp -s "$dir/out.manifest.json" "$work/reference/out.manifest.json"; then
        fail "$label: manifest differs from $reference's"
    else
        pass "$label: env -i quantize gives the reference's bytes (output and manifest)"
    fi
}

# Tarball: layout, version, libraries, bytes.
tar -xzf "$tarball" -C "$work"
unpacked="$work/$(dist_package_name "$version")"
binary="$unpacked/nvfp4"
for file in nvfp4 README.md THIRD_PARTY_LICENSES.txt; do
    [ -f "$unpacked/$file" ] || fail "$tarball has no $(basename "$unpacked")/$file"
done
[ -x "$binary" ] || { echo "dist check: $binary missing or not executable" >&2; exit 1; }
if bad=$(dist_disallowed_libraries "$binary"); then
    pass "ldd: only glibc/libstdc++/libgcc_s ($(ldd "$binary" | awk '{print $1}' | xargs))"
else
    fail "ldd lists libraries outside glibc/libstdc++/libgcc_s: $(echo $bad)"
fi
[ "$(env -i "$binary" --version)" = "$version" ] && pass "tarball --version = $version" \
    || fail "tarball binary --version says '$(env -i "$binary" --version)', Manifest.swift '$version'"
same_bytes_as_reference tarball "$binary"

# A machine without Swift: a root filesystem holding only the binary, the libraries ldd resolves for
# it, the fixture and /proc (the Swift runtime reads the arguments from /proc/self/cmdline). The
# toolchain build, put in the same jail, must fail to start, so the jail is known to hide the toolchain.
jail="$work/jail"
make_jail() {
    local library
    rm -rf "$jail"
    mkdir -p "$jail/proc" "$jail/out"
    cp "$1" "$jail/nvfp4"
    cp "$fixture" "$jail/model.safetensors"
    for library in $(ldd "$1" | grep -o '/[^ ]*'); do
        mkdir -p "$jail$(dirname "$library")"
        cp -L "$library" "$jail$library"
    done
}
in_jail() {
    unshare --mount --pid --fork sh -c 'mount -t proc proc "$0/proc" && exec /usr/sbin/chroot "$0" "$@"' "$jail" "$@"
}
# Whether this machine lets us build the jail at all (root, chroot, a private mount and pid namespace).
jail_possible() {
    mkdir -p "$work/probe"
    [ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/chroot ] \
        && unshare --mount --pid --fork sh -c 'mount -t proc proc "$0"' "$work/probe" 2>/dev/null
}
if jail_possible; then
    make_jail "$binary"
    if in_jail /nvfp4 quantize /model.safetensors -o /out/out.safetensors 2>"$work/jail.stderr" \
        && cmp -s "$jail/out/out.safetensors" "$work/reference/out.safetensors"; then
        pass "jail (only the binary, glibc, libstdc++, libgcc_s): quantize gives the reference's bytes"
    else
        fail "jail: quantize failed or gave other bytes: $(tail -1 "$work/jail.stderr")"
    fi
    cp "$reference" "$jail/toolchain-nvfp4"
    if in_jail /toolchain-nvfp4 --version >/dev/null 2>&1; then
        fail "jail: the toolchain build starts there too, so the jail does not hide the toolchain"
    else
        pass "jail: the toolchain build cannot start there"
    fi
else
    echo "dist check: skipped: the jail test (needs root, chroot, and unshare --mount --pid)"
fi

# Wheel: name, tag, RECORD, metadata.
expected_tag=$(dist_wheel_tag "$binary")
[ "$(basename "$wheel")" = "nvfp4-$version-$expected_tag.whl" ] && pass "wheel name $(basename "$wheel")" \
    || fail "wheel is $(basename "$wheel"), expected nvfp4-$version-$expected_tag.whl"
python3 - "$wheel" "$version" <<'EOF' && pass "wheel RECORD, METADATA and scripts/nvfp4 mode" || fail "wheel contents (above)"
import base64, hashlib, sys, zipfile
path, version = sys.argv[1], sys.argv[2]
whl = zipfile.ZipFile(path)
names = set(whl.namelist())
record_name = f"nvfp4-{version}.dist-info/RECORD"
listed, errors = set(), []
for line in whl.read(record_name).decode().splitlines():
    name, digest, size = line.rsplit(",", 2)
    listed.add(name)
    if name == record_name:
        continue
    data = whl.read(name)
    want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if digest != want or int(size) != len(data):
        errors.append(f"RECORD entry for {name} does not match the file")
if listed != names:
    errors.append(f"RECORD and archive differ: {sorted(listed ^ names)}")
meta = whl.read(f"nvfp4-{version}.dist-info/METADATA").decode()
if f"\nVersion: {version}\n" not in meta:
    errors.append(f"METADATA does not say Version: {version}")
script = whl.getinfo(f"nvfp4-{version}.data/scripts/nvfp4")
if (script.external_attr >> 16) & 0o111 != 0o111:
    errors.append("data/scripts/nvfp4 is not executable in the archive")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

# Installers: each puts `nvfp4` in a bin directory; that file must be the tarball's binary and work.
installed_command() {
    local label=$1 command=$2
    if [ ! -x "$command" ]; then
        fail "$label: no executable $command after install"
        return
    fi
    cmp -s "$command" "$binary" && pass "$label: installed nvfp4 is the tarball's binary" \
        || fail "$label: installed nvfp4 differs from the tarball's binary"
    [ "$(env -i "$command" --version)" = "$version" ] && pass "$label: --version = $version" \
        || fail "$label: --version says '$(env -i "$command" --version)'"
    same_bytes_as_reference "$label" "$command"
}

python3 -c 'import venv, ensurepip' 2>/dev/null || dist_apt_install python3-venv
python3 -m venv "$work/venv"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$work/venv/bin/pip" install --no-index --quiet "$wheel"
installed_command pip "$work/venv/bin/nvfp4"

if command -v uv >/dev/null 2>&1; then
    if UV_TOOL_DIR="$work/uv-tools" UV_TOOL_BIN_DIR="$work/uv-bin" uv tool install --offline "$wheel" \
        >"$work/uv.log" 2>&1; then
        installed_command "uv-tool" "$work/uv-bin/nvfp4"
    else
        fail "uv tool install: $(tail -3 "$work/uv.log")"
    fi
else
    echo "dist check: skipped: uv tool install (uv not on PATH)"
fi
if command -v pipx >/dev/null 2>&1; then
    if PIPX_HOME="$work/pipx-home" PIPX_BIN_DIR="$work/pipx-bin" pipx install --pip-args=--no-index "$wheel" \
        >"$work/pipx.log" 2>&1; then
        installed_command pipx "$work/pipx-bin/nvfp4"
    else
        fail "pipx install: $(tail -3 "$work/pipx.log")"
    fi
else
    echo "dist check: skipped: pipx install (pipx not on PATH)"
fi

if [ "$failures" -ne 0 ]; then
    echo "dist check: $failures check(s) failed" >&2
    exit 1
fi
echo "dist check: all passed for nvfp4 $version ($(basename "$tarball"), $(basename "$wheel"))"
