# Shared by scripts/dist.sh and scripts/dist/check.sh (source it; it defines functions only).
# Each rule of the distribution lives here once: where the version comes from, which shared
# libraries a distributed binary may need, how its glibc floor is read, and the artifact names.

# Installs Debian packages $@ (apt-get; sudo unless root), as scripts/setup.sh does for the build's own.
dist_apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# The one source of the version: `public let nvfp4Version = "X.Y.Z"` in Manifest.swift (the same
# constant `nvfp4 --version` prints). Fails unless exactly one such line exists.
dist_source_version() {
    local file="Sources/NVFP4Kit/Commands/Manifest.swift" found
    found=$(sed -n 's/^public let nvfp4Version = "\([0-9][0-9]*\(\.[0-9][0-9]*\)*\)"$/\1/p' "$file")
    if [ -z "$found" ] || [ "$(printf '%s\n' "$found" | wc -l)" -ne 1 ]; then
        echo "dist: cannot read one version from $file (expected one line 'public let nvfp4Version = \"X.Y.Z\"')" >&2
        return 2
    fi
    printf '%s\n' "$found"
}

# The machine name used in artifact names and wheel tags (x86_64, aarch64).
dist_arch() { uname -m; }

# The tarball's top directory for version $1, and the tarball's name.
dist_package_name() { echo "nvfp4-$1-linux-$(dist_arch)"; }
dist_tarball_name() { echo "$(dist_package_name "$1").tar.gz"; }

# Lists the shared libraries `ldd` resolves for binary $1 that are not allowed: everything except
# glibc's own libraries, the vdso, libstdc++ and libgcc_s. Prints them; returns 1 when any.
dist_disallowed_libraries() {
    local bad
    bad=$(ldd "$1" | awk '{print $1}' | grep -v -E '^(linux-vdso\.so\.1|linux-gate\.so\.1|/lib(64)?/ld-linux[-a-z0-9_.]*\.so\.[0-9]+|ld-linux[-a-z0-9_.]*\.so\.[0-9]+|lib(c|m|dl|pthread|rt|util|resolv)\.so\.[0-9]+|libstdc\+\+\.so\.6|libgcc_s\.so\.1)$' || true)
    # "not found" lines name a library too, so they land here as well.
    if [ -n "$bad" ]; then
        printf '%s\n' "$bad"
        return 1
    fi
}

# The highest GLIBC_2.N symbol version binary $1 needs from its dynamic symbol table; prints N.
dist_glibc_minor() {
    local highest
    highest=$(objdump -T "$1" | grep -o 'GLIBC_2\.[0-9][0-9]*' | sort -t. -k2,2n | tail -1)
    if [ -z "$highest" ]; then
        echo "dist: $1: no GLIBC_2.N symbol versions found (not a glibc-linked binary?)" >&2
        return 2
    fi
    echo "${highest#GLIBC_2.}"
}

# The wheel's platform tag for binary $1 (PEP 600): manylinux_2_N_ARCH with N from its glibc symbols.
dist_wheel_tag() {
    local minor
    minor=$(dist_glibc_minor "$1") || return 2
    echo "py3-none-manylinux_2_${minor}_$(dist_arch)"
}
