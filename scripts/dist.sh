#!/usr/bin/env bash
# Builds the distribution into dist/ from a checkout (see docs/distribution.md):
#   nvfp4-VERSION-linux-ARCH.tar.gz                     the self-contained binary, README, licenses
#   nvfp4-VERSION-py3-none-manylinux_2_N_ARCH.whl       the same binary as the `nvfp4` command
#   SHA256SUMS
# The binary links the Swift runtime (--static-swift-stdlib) and libzstd statically, so it needs
# only glibc (2.N, read from its symbol versions; 2.34 with this toolchain), libstdc++ and libgcc_s.
# VERSION comes from Manifest.swift's nvfp4Version, the constant `nvfp4 --version` prints.
# The build uses its own scratch directory (.build-dist), so `swift build` in .build is untouched.
# scripts/dist/check.sh checks the result. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/dist/lib.sh

./scripts/setup.sh
# strip/objdump (binutils) and python3 for the wheel; usually present with a Swift toolchain.
need=()
for tool in strip objdump nm; do command -v "$tool" >/dev/null 2>&1 || need+=(binutils); done
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ ${#need[@]} -eq 0 ] || dist_apt_install $(printf '%s\n' "${need[@]}" | sort -u)

version=$(dist_source_version)
scratch=.build-dist

# -lzstd finds libzstd.so before libzstd.a in the same directory; a directory that holds only the
# archive, searched first, makes the link static without touching Package.swift.
static_libs="$PWD/$scratch/static-libs"
mkdir -p "$static_libs"
zstd_archive=""
for dir in /usr/lib/"$(dist_arch)"-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
    if [ -f "$dir/libzstd.a" ]; then zstd_archive="$dir/libzstd.a"; break; fi
done
if [ -z "$zstd_archive" ]; then
    echo "dist: libzstd.a not found (install libzstd-dev)" >&2
    exit 2
fi
ln -sfn "$zstd_archive" "$static_libs/libzstd.a"
# The Glibc overlay's hypotf reference would otherwise need glibc 2.35 (see glibc_compat.c).
toolchain_bin=$(dirname "$(readlink -f "$(command -v swift)")")
"$toolchain_bin/clang" -c -O2 -fPIC -fno-math-errno -o "$static_libs/glibc_compat.o" scripts/dist/glibc_compat.c
# Any call out of the wrapper (a libm hypotf) would be wrapped back into itself.
if [ -n "$(nm -u "$static_libs/glibc_compat.o")" ]; then
    echo "dist: glibc_compat.o must not call anything: $(nm -u "$static_libs/glibc_compat.o" | xargs)" >&2
    exit 1
fi

# SwiftPM does not track the object above or libzstd.a as link inputs: relink every time.
rm -f "$scratch/release/nvfp4"
swift build -c release --product nvfp4 --scratch-path "$scratch" --static-swift-stdlib \
    -Xlinker -L"$static_libs" -Xlinker --wrap=hypotf -Xlinker "$static_libs/glibc_compat.o"
built="$scratch/release/nvfp4"

stage="dist/.stage"
rm -rf "$stage"
name=$(dist_package_name "$version")
mkdir -p "$stage/$name"
binary="$stage/$name/nvfp4"
strip -o "$binary" "$built"

if ! bad=$(dist_disallowed_libraries "$binary"); then
    echo "dist: $binary needs shared libraries outside glibc/libstdc++/libgcc_s:" >&2
    printf '  %s\n' $bad >&2
    exit 1
fi
reported=$(env -i "$binary" --version)
if [ "$reported" != "$version" ]; then
    echo "dist: $binary --version says '$reported', Manifest.swift says '$version'" >&2
    exit 1
fi
size_note="binary $(stat -c %s "$built") bytes, $(stat -c %s "$binary") stripped"
tag=$(dist_wheel_tag "$binary")
glibc="2.$(dist_glibc_minor "$binary")"

# Licenses: the project's own, and those of the code linked into the binary (the Swift runtime,
# each resolved package, libzstd).
license_files=()
if [ -f LICENSE ]; then
    cp LICENSE "$stage/$name/LICENSE"
    license_files+=("$stage/$name/LICENSE")
else
    echo "dist: warning: the repository has no LICENSE file; the artifacts ship without the project's license" >&2
fi
third_party="$stage/$name/THIRD_PARTY_LICENSES.txt"
{
    echo "nvfp4 $version links the following code into its binary."
    swift_license="$toolchain_bin/../share/swift/LICENSE.txt"
    for entry in "Swift runtime, standard library and Foundation:$swift_license" \
        "zstd:/usr/share/doc/libzstd-dev/copyright"; do
        if [ -f "${entry#*:}" ]; then
            printf '\n==== %s ====\n\n' "${entry%%:*}"
            cat "${entry#*:}"
        fi
    done
    for checkout in "$scratch"/checkouts/*/; do
        for file in "$checkout"LICENSE* "$checkout"NOTICE*; do
            [ -f "$file" ] || continue
            printf '\n==== %s (%s) ====\n\n' "$(basename "$checkout")" "$(basename "$file")"
            cat "$file"
        done
    done
} >"$third_party"
license_files+=("$third_party")
license_args=()
for file in "${license_files[@]}"; do license_args+=(--license-file "$file"); done
sed -e "s/@VERSION@/$version/g" -e "s/@GLIBC@/$glibc/g" scripts/dist/README.md >"$stage/$name/README.md"

# Reproducible archives: entries sorted, owned by root, dated from the last commit.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "$name" \
    | gzip -n -9 >"$stage/$(dist_tarball_name "$version")"
python3 scripts/dist/make_wheel.py --name nvfp4 --version "$version" --tag "$tag" \
    --binary "$binary" --command nvfp4 \
    --summary "Quantize Hugging Face safetensors checkpoints to NVIDIA NVFP4 (torchao-compatible bytes)" \
    --description "$stage/$name/README.md" \
    "${license_args[@]}" \
    --epoch "$epoch" --out-dir "$stage" >/dev/null
(cd "$stage" && sha256sum -- *.tar.gz *.whl >SHA256SUMS)

# Replace the previous artifacts only now that every new one exists.
rm -rf dist/nvfp4-* dist/SHA256SUMS
mv "$stage"/*.tar.gz "$stage"/*.whl "$stage"/SHA256SUMS dist/
rm -rf "$stage"
echo "dist: nvfp4 $version, needs glibc >= $glibc; $size_note"
(cd dist && ls -l -- *.tar.gz *.whl && cat SHA256SUMS)
