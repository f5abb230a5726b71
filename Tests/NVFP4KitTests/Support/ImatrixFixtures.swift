import Foundation
@testable import NVFP4Kit

/// The llama.cpp imatrix fixtures (`scripts/fixtures/make_imatrix_fixtures.py`) and a GGUF
/// writer written here from the spec, for hostile variants.
enum ImatrixFixtures {
    static let names = ["tiny-llama", "llama", "llama-partial", "qwen-moe", "mixtral", "stacked"]
    static let formats = ["gguf", "dat"]

    static func path(_ name: String, _ format: String) -> String { "\(FixturePaths.root)/Fixtures/imatrix/\(name).imatrix.\(format)" }

    /// The modules and means the generator computed for `name` in `format`, read with Foundation.
    static func expected(_ name: String, _ format: String) throws -> [String: [Float]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(FixturePaths.root)/Fixtures/imatrix/\(name).expected.json"))
        let object = try JSONSerialization.jsonObject(with: data) as? [String: [String: [Double]]]
        return (object?[format] ?? [:]).mapValues { $0.map(Float.init) }
    }

    /// The other family's name for the same llama.cpp weight (Qwen `mlp.*` ↔ Mixtral
    /// `block_sparse_moe.*`), which the reader lists too; `nil` when there is none.
    static func alternate(_ module: String) -> String? {
        let pairs = [(".mlp.gate", ".block_sparse_moe.gate"), (".gate_proj", ".w1"), (".up_proj", ".w3"), (".down_proj", ".w2")]
        if module.contains(".mlp.experts.") {
            for (qwen, mixtral) in pairs.dropFirst() where module.hasSuffix(qwen) {
                return String(module.dropLast(qwen.count)).replacing(".mlp.experts.", with: ".block_sparse_moe.experts.") + mixtral
            }
        }
        if module.contains(".block_sparse_moe.experts.") {
            for (qwen, mixtral) in pairs.dropFirst() where module.hasSuffix(mixtral) {
                return String(module.dropLast(mixtral.count)).replacing(".block_sparse_moe.experts.", with: ".mlp.experts.") + qwen
            }
        }
        if module.hasSuffix(".mlp.gate") { return String(module.dropLast(".mlp.gate".count)) + ".block_sparse_moe.gate" }
        if module.hasSuffix(".block_sparse_moe.gate") { return String(module.dropLast(".block_sparse_moe.gate".count)) + ".mlp.gate" }
        return nil
    }
}

/// A GGUF file built from the format description (ggml `docs/gguf.md`), not from the reader.
struct GGUFBuilder {
    var version: UInt32 = 3
    var magic: [UInt8] = Array("GGUF".utf8)
    /// Key, GGUF value type, encoded value.
    var metadata: [(String, UInt32, [UInt8])] = [("general.type", 8, GGUFBuilder.string("imatrix"))]
    /// Name, ggml sizes (innermost first), ggml type, data.
    var tensors: [(String, [UInt64], UInt32, [UInt8])] = []
    var alignment = 32
    var tensorCountOverride: UInt64?
    var offsetShift: UInt64 = 0

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func string(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }
    static func floats(_ v: [Float]) -> [UInt8] { v.flatMap { u32($0.bitPattern) } }

    /// An entry `W.in_sum2` `[K, n]` and `W.counts` `[1, n]`.
    mutating func entry(_ weight: String, sums: [[Float]], counts: [Float]) {
        tensors.append(("\(weight).in_sum2", [UInt64(sums.first?.count ?? 0), UInt64(sums.count)], 0, GGUFBuilder.floats(sums.flatMap { $0 })))
        tensors.append(("\(weight).counts", [1, UInt64(counts.count)], 0, GGUFBuilder.floats(counts)))
    }

    func bytes() -> [UInt8] {
        var out = magic + GGUFBuilder.u32(version) + GGUFBuilder.u64(tensorCountOverride ?? UInt64(tensors.count)) + GGUFBuilder.u64(UInt64(metadata.count))
        for (key, type, value) in metadata { out += GGUFBuilder.string(key) + GGUFBuilder.u32(type) + value }
        var offset: UInt64 = 0
        var data: [UInt8] = []
        for (name, shape, type, bytes) in tensors {
            out += GGUFBuilder.string(name) + GGUFBuilder.u32(UInt32(shape.count)) + shape.flatMap(GGUFBuilder.u64) + GGUFBuilder.u32(type) + GGUFBuilder.u64(offset + offsetShift)
            data += bytes
            let padded = (bytes.count + alignment - 1) / alignment * alignment
            data += [UInt8](repeating: 0, count: padded - bytes.count)
            offset += UInt64(padded)
        }
        out += [UInt8](repeating: 0, count: (alignment - out.count % alignment) % alignment)
        return out + data
    }
}

/// A legacy `.dat` imatrix built from `save_imatrix_legacy`'s layout.
func legacyImatrix(_ entries: [(name: String, ncall: Int32, values: [Float])], count: Int32? = nil, trailer: Bool = true) -> [UInt8] {
    func i32(_ v: Int32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    var out = i32(count ?? Int32(entries.count))
    for e in entries {
        out += i32(Int32(e.name.utf8.count)) + Array(e.name.utf8) + i32(e.ncall) + i32(Int32(e.values.count)) + GGUFBuilder.floats(e.values)
    }
    if trailer { out += i32(7) + i32(4) + Array("data".utf8) }
    return out
}
