import Glibc
import NVFP4Kit

/// An NVFP4 decode written in the tests from the format's definition, sharing no code with the
/// library's decoder: e2m1 code × (per-tensor scale × e4m3 block scale), rounded to bf16.
enum IndependentDecode {
    /// The 16 e2m1 values, by code (sign in bit 3).
    static let e2m1: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]

    /// e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; exponent 0 is subnormal (m/8 · 2^-6).
    static func e4m3(_ code: UInt8) -> Float {
        let sign: Float = code & 0x80 != 0 ? -1 : 1
        let exponent = Int(code >> 3 & 0x0F)
        let mantissa = Float(code & 0x07)
        if exponent == 0 { return sign * mantissa / 8 * 0.015625 }
        var scale: Float = 1
        for _ in 0..<abs(exponent - 7) { scale = exponent > 7 ? scale * 2 : scale / 2 }
        return sign * (1 + mantissa / 8) * scale
    }

    /// The byte of block scale `(row, block)` in cuBLAS's 128×4-tile layout (torchao `to_blocked`):
    /// tiles of 128 rows × 4 blocks, row-major over the tiles, each stored as 32 × 16 bytes where
    /// row r of the tile lands in line r % 32, column group r / 32.
    static func swizzledOffset(row: Int, block: Int, blocks: Int) -> Int {
        let tilesPerRow = (blocks + 3) / 4
        let tile = (row / 128) * tilesPerRow + block / 4
        let r = row % 128
        return tile * 512 + (r % 32) * 16 + (r / 32) * 4 + block % 4
    }

    /// bf16 bits of `value`, rounded to nearest, ties to even (what `torch.Tensor.to(bfloat16)` does).
    static func bf16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return 0x7FC0 }
        let rounding = 0x7FFF + (bits >> 16 & 1)
        return UInt16((bits &+ rounding) >> 16)
    }

    /// The float32 of 4 little-endian bytes.
    static func f32(_ bytes: ArraySlice<UInt8>) -> Float {
        let b = Array(bytes)
        return Float(bitPattern: UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24)
    }

    /// Little-endian bf16 bytes of one `[rows, columns]` matrix decoded from its packed bytes,
    /// stored scales and per-tensor scale.
    static func matrix(packed: ArraySlice<UInt8>, scales: ArraySlice<UInt8>, perTensorScale: Float, rows: Int, columns: Int, swizzled: Bool) -> [UInt8] {
        let p = Array(packed), s = Array(scales)
        let blocks = columns / 16
        var out: [UInt8] = []
        out.reserveCapacity(rows * columns * 2)
        for row in 0..<rows {
            for column in 0..<columns {
                let byte = p[row * columns / 2 + column / 2]
                let code = column % 2 == 0 ? byte & 0x0F : byte >> 4
                let block = column / 16
                let scaleByte = s[swizzled ? swizzledOffset(row: row, block: block, blocks: blocks) : row * blocks + block]
                let value = e2m1[Int(code)] * (perTensorScale * e4m3(scaleByte))
                let bits = bf16(value)
                out += [UInt8(bits & 0xFF), UInt8(bits >> 8)]
            }
        }
        return out
    }
}

/// How a layout names and stores a module's tensors, written out in the tests (not read from the
/// library's format table), and how its global scale is to be read.
struct LayoutSpelling: Sendable {
    var packed: String
    var blockScales: String
    var globalScale: String
    /// compressed-tensors stores `1 / pts`.
    var reciprocal: Bool
    var swizzled: Bool
    /// The name `inspect` reports.
    var layoutName: String
    /// The quantization_config member listing kept modules.
    var ignoreKey: String

    static let torchao = LayoutSpelling(
        packed: "_weight_qdata", blockScales: "_weight_scale", globalScale: "_weight_per_tensor_scale", reciprocal: false, swizzled: true,
        layoutName: "torchao", ignoreKey: "modules_to_not_convert")
    static let compressedTensors = LayoutSpelling(
        packed: "weight_packed", blockScales: "weight_scale", globalScale: "weight_global_scale", reciprocal: true, swizzled: false,
        layoutName: "compressed-tensors", ignoreKey: "ignore")
    static let modelopt = LayoutSpelling(
        packed: "weight", blockScales: "weight_scale", globalScale: "weight_scale_2", reciprocal: false, swizzled: false,
        layoutName: "modelopt", ignoreKey: "ignore")

    /// The module of a stored packed tensor, or `nil`.
    func module(ofPacked name: String, dtype: DType) -> String? {
        guard name.hasSuffix("." + packed), dtype == .u8 else { return nil }
        return String(name.dropLast(packed.count + 1))
    }

    /// The bf16 bytes of `module` decoded from stored tensors (2-D, or `[E, N, K]` stacked with one scale per expert).
    func decode(_ module: String, in tensors: [String: ModelFixtures.Stored]) -> (shape: [Int], bytes: [UInt8])? {
        guard let p = tensors["\(module).\(packed)"], let s = tensors["\(module).\(blockScales)"], let g = tensors["\(module).\(globalScale)"] else { return nil }
        let (rows, columns) = (p.shape[p.shape.count - 2], p.shape[p.shape.count - 1] * 2)
        let experts = p.shape.count == 3 ? p.shape[0] : 1
        let scaleBytes = s.bytes.count / experts
        var out: [UInt8] = []
        for e in 0..<experts {
            let stored = IndependentDecode.f32(g.bytes[(4 * e)..<(4 * e + 4)])
            out += IndependentDecode.matrix(
                packed: p.bytes[(e * rows * columns / 2)..<((e + 1) * rows * columns / 2)], scales: s.bytes[(e * scaleBytes)..<((e + 1) * scaleBytes)],
                perTensorScale: reciprocal ? 1 / stored : stored, rows: rows, columns: columns, swizzled: swizzled)
        }
        return ((p.shape.count == 3 ? [experts] : []) + [rows, columns], out)
    }
}

/// Every tensor of a safetensors file (or every shard of a folder), by name.
func storedTensors(_ path: String) throws -> [String: ModelFixtures.Stored] {
    var st = stat()
    if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { return try ModelFixtures.tensors(in: path) }
    let reader = try SafetensorsReader(path: path)
    var result: [String: ModelFixtures.Stored] = [:]
    for t in reader.header.tensors {
        result[t.name] = ModelFixtures.Stored(dtype: t.dtype, shape: t.shape, bytes: try reader.withBytes(of: t) { Array($0) }, shard: path)
    }
    return result
}
