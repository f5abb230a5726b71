// swift-tools-version: 6.2
import PackageDescription

/// Settings shared by every target: Swift 6 language mode and the upcoming features that keep the
/// API honest about existentials and imports.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "nvfp4",
    products: [
        .executable(name: "nvfp4", targets: ["nvfp4"]),
        .library(name: "NVFP4Kit", targets: ["NVFP4Kit"]),
    ],
    dependencies: [
        // SHA-256 for the manifest: BoringSSL's assembly uses the CPU's SHA extensions (~1.8 GB/s here).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3")
    ],
    targets: [
        // libzstd (system library; `apt-get install libzstd-dev`, see scripts/setup.sh).
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]
        ),
        // The codec's innermost loops in C, with AVX-512/AVX2 copies picked at load time (see
        // Sources/NVFP4Kit/Codec/NVFP4Kernel.swift for why C).
        .target(name: "CNVFP4Kernel"),
        // All logic: safetensors I/O, the NVFP4 codec, layouts, the commands' work. Never prints.
        .target(
            name: "NVFP4Kit",
            dependencies: ["CNVFP4Kernel", .product(name: "Crypto", package: "swift-crypto"), "CZstd"],
            swiftSettings: swiftSettings
        ),
        // Argument parsing, help text, output formatting and exit codes.
        .target(
            name: "NVFP4CLI",
            dependencies: ["NVFP4Kit"],
            swiftSettings: swiftSettings
        ),
        // The thin executable.
        .executableTarget(
            name: "nvfp4",
            dependencies: ["NVFP4CLI"],
            swiftSettings: swiftSettings
        ),
        // End-to-end benchmark against `cp` (see README, "Speed and memory").
        .executableTarget(
            name: "nvfp4-bench",
            dependencies: ["NVFP4Kit"],
            swiftSettings: swiftSettings
        ),
        // Single-threaded codec throughput (G elements/s) on a seeded synthetic matrix.
        .executableTarget(
            name: "nvfp4-codec-bench",
            dependencies: ["NVFP4Kit"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "NVFP4KitTests",
            dependencies: ["NVFP4Kit", "NVFP4CLI", "CNVFP4Kernel", "CZstd"],
            swiftSettings: swiftSettings
        ),
    ]
)

// The libFuzzer harness (scripts/fuzz.sh). It exists only when NVFP4_FUZZ=1, so a plain
// `swift build` / `swift test` never compiles it; fuzz.sh builds it with its own --scratch-path.
if Context.environment["NVFP4_FUZZ"] == "1" {
    // Coverage instrumentation for the code under test, not only the harness.
    for target in package.targets where target.name == "NVFP4Kit" {
        target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-sanitize=fuzzer"])]
    }
    package.targets.append(
        .executableTarget(
            name: "nvfp4-fuzz",
            dependencies: ["NVFP4Kit"],
            path: "Fuzz/Sources/nvfp4-fuzz",
            swiftSettings: swiftSettings + [.unsafeFlags(["-sanitize=fuzzer"])],
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer"])]
        ))
}
