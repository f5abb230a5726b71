import NVFP4Kit

/// Paths of the committed fixtures, found from this file's location.
enum FixturePaths {
    /// The repository root.
    static let root: String = {
        var path = #filePath
        for _ in 0..<4 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }()

    static func torchaoInput(_ dtype: String) -> String { "\(root)/Fixtures/torchao/cases.\(dtype).safetensors" }

    static func torchaoExpected(_ dtype: String, _ mode: ScalingMode, _ numerics: DivisionNumerics, suffix: String = "") -> String {
        "\(root)/Fixtures/torchao/expected/cases.\(dtype).\(mode.rawValue).\(numerics.rawValue)\(suffix).safetensors"
    }

    static let tinyLlama = "\(root)/Fixtures/tiny-llama/model.safetensors"
}

/// A fresh folder under /tmp, removed by `remove()`.
struct ScratchFolder {
    let path: String

    init() {
        path = "/tmp/nvfp4-test-\(UInt64.random(in: 0..<UInt64.max))"
        _ = path.withCString { mkdir($0, 0o755) }
    }

    func remove() {
        _ = system("rm -rf '\(path)'")
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }
}

#if canImport(Glibc)
import Glibc
#endif

/// The bytes of every tensor in a safetensors file, by name.
func tensorBytes(_ path: String) throws -> [String: [UInt8]] {
    let reader = try SafetensorsReader(path: path)
    var result: [String: [UInt8]] = [:]
    for t in reader.header.tensors { result[t.name] = try reader.withBytes(of: t) { Array($0) } }
    return result
}
