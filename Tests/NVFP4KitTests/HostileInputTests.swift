import Foundation
import Glibc
import NVFP4Kit
import Testing

// Crafted safetensors files, one per validation rule of the reference reader
// (huggingface/safetensors `tensor.rs`, see shared/reference/safetensors-and-swift.md Part C),
// checked through a mapped file, through in-memory and pipe streams, and through `nvfp4 quantize`.
//
// Every verdict below was cross-checked against the reference itself (PyPI safetensors 0.8.0,
// `safetensors._safetensors_rust.deserialize`): all agree except the duplicate keys with identical
// values (a repeated tensor entry, a repeated key inside `__metadata__`), which serde lets through
// (last one wins) and this reader rejects, as the format's README requires ("Duplicate keys are
// disallowed").

/// Builds safetensors bytes in memory.
private enum Craft {
    /// The 8-byte little-endian length prefix.
    static func prefix(_ length: UInt64) -> [UInt8] {
        withUnsafeBytes(of: length.littleEndian) { Array($0) }
    }

    /// A file with `json` as its header (its true length as the prefix) followed by `data`.
    static func file(_ json: String, data: [UInt8] = [], padTo8: Bool = false) -> [UInt8] {
        file(header: Array(json.utf8), data: data, padTo8: padTo8)
    }

    /// A file with raw header bytes.
    static func file(header: [UInt8], data: [UInt8] = [], padTo8: Bool = false) -> [UInt8] {
        var header = header
        if padTo8 { while header.count % 8 != 0 { header.append(0x20) } }
        return prefix(UInt64(header.count)) + header + data
    }

    /// A length prefix that may lie, followed by `rest`.
    static func raw(length: UInt64, _ rest: [UInt8]) -> [UInt8] { prefix(length) + rest }

    /// One tensor entry's JSON.
    static func entry(_ dtype: String, _ shape: [Int], _ begin: Int, _ end: Int) -> String {
        "{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(begin),\(end)]}"
    }

    /// `count` bytes counting up from `start`, so every tensor's bytes are distinguishable.
    static func bytes(_ count: Int, from start: UInt8 = 1) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: Int(start) + $0) }
    }

    /// A header length for a JSON text, for cases whose expectations depend on it.
    static func headerLength(_ json: String) -> UInt64 { UInt64(json.utf8.count) }

    /// A dense 16×16 weight `layer.weight` (and, optionally, a kept `layer.bias` before it).
    static func weightFile(dtype: DType = .bf16, withBias: Bool = false, _ value: (Int) -> Float) -> [UInt8] {
        let count = 256
        var data: [UInt8] = []
        var json = "{"
        if withBias {
            json += "\"layer.bias\":" + entry("F32", [16], 0, 64) + ","
            for i in 0..<16 { data += withUnsafeBytes(of: Float(i).bitPattern.littleEndian) { Array($0) } }
        }
        let start = data.count
        for i in 0..<count {
            let v = value(i)
            switch dtype {
            case .bf16:
                // Only bf16-exact values (and NaN/Inf) are used, so truncation is exact.
                data += withUnsafeBytes(of: UInt16(truncatingIfNeeded: v.bitPattern >> 16).littleEndian) { Array($0) }
            case .f32:
                data += withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) }
            default:
                fatalError("unsupported dtype for a crafted weight")
            }
        }
        json += "\"layer.weight\":" + entry(dtype.rawValue, [16, 16], start, data.count) + "}"
        return file(json, data: data, padTo8: true)
    }

    /// A simple, bf16-exact, non-zero weight value.
    static func ordinary(_ i: Int) -> Float { Float((i * 7) % 13 - 6) * 0.125 + 0.0625 }
}

/// An in-memory ``ByteStream`` that hands out at most a few bytes per read, to exercise short reads.
private final class ChunkedMemoryStream: ByteStream {
    private let bytes: [UInt8]
    private var position = 0
    private var reads = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let chunk = 1 + reads % 7
        reads += 1
        let n = min(buffer.count, chunk, bytes.count - position)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + position, byteCount: n)
        }
        position += n
        return n
    }
}

/// What a rejected file must be rejected with.
private enum Rejection: Sendable, CustomStringConvertible {
    /// Exactly this error.
    case exactly(SafetensorsError)
    /// ``SafetensorsError/invalidJSON(_:)`` whose reason contains the text.
    case invalidJSON(containing: String)
    /// ``SafetensorsError/invalidTensorEntry(tensor:reason:)`` for this tensor.
    case invalidTensorEntry(tensor: String)
    /// ``SafetensorsError/invalidOffset(tensor:)`` naming one of these tensors.
    case invalidOffset(oneOf: [String])

    func matches(_ error: SafetensorsError) -> Bool {
        switch (self, error) {
        case (.exactly(let expected), _): return error == expected
        case (.invalidJSON(let text), .invalidJSON(let syntax)): return syntax.reason.contains(text)
        case (.invalidTensorEntry(let name), .invalidTensorEntry(let tensor, _)): return tensor == name
        case (.invalidOffset(let names), .invalidOffset(let tensor)): return names.contains(tensor)
        default: return false
        }
    }

    var description: String {
        switch self {
        case .exactly(let e): return "exactly \(e)"
        case .invalidJSON(let text): return "invalid JSON containing \"\(text)\""
        case .invalidTensorEntry(let name): return "invalid tensor entry for \"\(name)\""
        case .invalidOffset(let names): return "invalid offset for one of \(names)"
        }
    }
}

/// One crafted file that must be rejected.
private struct HostileCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var rejection: Rejection
    /// What a stream must report, where it differs from the mapped file (the coverage check runs
    /// in `finish()` and sees only one byte past the end); `nil`: the very same error.
    var streamRejection: Rejection? = nil

    var testDescription: String { name }
}

/// One crafted file that must be accepted.
private struct AcceptedCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    /// Tensor names in data order.
    var tensors: [String]
    var metadata: [String: String] = [:]
    /// The data section starts at an odd offset (as mlx's writer, which does not pad, can produce).
    var unalignedData = false

    var testDescription: String { name }
}

private let twoTensorData = Craft.bytes(12)
private let trailingJSON = "{\"a\":" + Craft.entry("F32", [4], 0, 16) + "}"
private let shortJSON = "{\"a\":" + Craft.entry("F32", [4], 0, 16) + "}"

private let hostileCases: [HostileCase] = [
    // 1. The length prefix.
    HostileCase(name: "empty file", bytes: [], rejection: .exactly(.headerTooSmall(fileSize: 0))),
    HostileCase(name: "file shorter than 8 bytes", bytes: [2, 0, 0, 0, 0], rejection: .exactly(.headerTooSmall(fileSize: 5))),
    HostileCase(name: "header length 100,000,001", bytes: Craft.raw(length: 100_000_001, Array("{}".utf8)),
                rejection: .exactly(.headerTooLarge(length: 100_000_001))),
    HostileCase(name: "header length UInt64.max", bytes: Craft.raw(length: .max, Array("{}".utf8)),
                rejection: .exactly(.headerTooLarge(length: .max))),
    HostileCase(name: "header length past EOF", bytes: Craft.raw(length: 1000, Array("{}".utf8)),
                rejection: .exactly(.headerLengthPastEnd(length: 1000, fileSize: 10))),
    HostileCase(name: "header length 100,000,000 (the limit) past EOF", bytes: Craft.raw(length: 100_000_000, Array("{}".utf8)),
                rejection: .exactly(.headerLengthPastEnd(length: 100_000_000, fileSize: 10))),
    HostileCase(name: "header length 0", bytes: Craft.raw(length: 0, []), rejection: .invalidJSON(containing: "unexpected end")),
    // 2. UTF-8 and JSON.
    HostileCase(name: "invalid UTF-8 (0xFF) in a key",
                bytes: Craft.file(header: Array("{\"a".utf8) + [0xFF] + Array("\":{}}".utf8)), rejection: .invalidJSON(containing: "invalid UTF-8")),
    HostileCase(name: "overlong UTF-8 (C0 AF) in a key",
                bytes: Craft.file(header: Array("{\"a".utf8) + [0xC0, 0xAF] + Array("\":{}}".utf8)), rejection: .invalidJSON(containing: "invalid UTF-8")),
    HostileCase(name: "UTF-8-encoded surrogate (ED A0 80) in metadata",
                bytes: Craft.file(header: Array("{\"__metadata__\":{\"k\":\"".utf8) + [0xED, 0xA0, 0x80] + Array("\"}}".utf8)),
                rejection: .invalidJSON(containing: "invalid UTF-8")),
    HostileCase(name: "UTF-8 byte-order mark before the header",
                bytes: Craft.file(header: [0xEF, 0xBB, 0xBF] + Array("{}".utf8)), rejection: .invalidJSON(containing: "unexpected character")),
    HostileCase(name: "NUL-padded header", bytes: Craft.file(header: Array("{}".utf8) + [0, 0, 0, 0, 0, 0]),
                rejection: .invalidJSON(containing: "trailing characters")),
    HostileCase(name: "truncated JSON", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]", data: Craft.bytes(4)),
                rejection: .invalidJSON(containing: "unexpected end")),
    HostileCase(name: "two JSON values", bytes: Craft.file("{}{}"), rejection: .invalidJSON(containing: "trailing characters")),
    HostileCase(name: "trailing comma", bytes: Craft.file("{\"__metadata__\":{\"a\":\"b\",}}"), rejection: .invalidJSON(containing: "expected a key")),
    HostileCase(name: "raw control character in a string", bytes: Craft.file("{\"__metadata__\":{\"a\":\"b\u{01}\"}}"),
                rejection: .invalidJSON(containing: "control character")),
    HostileCase(name: "lone surrogate escape", bytes: Craft.file("{\"__metadata__\":{\"a\":\"\\ud800\"}}"),
                rejection: .invalidJSON(containing: "lone surrogate")),
    HostileCase(name: "top-level array", bytes: Craft.file("[]"), rejection: .exactly(.headerNotObject)),
    HostileCase(name: "top-level string", bytes: Craft.file("\"{}\""), rejection: .exactly(.headerNotObject)),
    HostileCase(name: "top-level null", bytes: Craft.file("null"), rejection: .exactly(.headerNotObject)),
    // __metadata__ must be null or an object of strings.
    HostileCase(name: "__metadata__ with a number value", bytes: Craft.file("{\"__metadata__\":{\"format\":1}}"),
                rejection: .exactly(.invalidMetadata(key: "format"))),
    HostileCase(name: "__metadata__ with a nested object", bytes: Craft.file("{\"__metadata__\":{\"format\":{}}}"),
                rejection: .exactly(.invalidMetadata(key: "format"))),
    HostileCase(name: "__metadata__ with a null value", bytes: Craft.file("{\"__metadata__\":{\"format\":null}}"),
                rejection: .exactly(.invalidMetadata(key: "format"))),
    HostileCase(name: "__metadata__ is a string", bytes: Craft.file("{\"__metadata__\":\"pt\"}"), rejection: .exactly(.invalidMetadata(key: nil))),
    HostileCase(name: "__metadata__ is an array", bytes: Craft.file("{\"__metadata__\":[\"pt\"]}"), rejection: .exactly(.invalidMetadata(key: nil))),
    // Dtypes: an exact, case-sensitive list.
    HostileCase(name: "dtype F8_E4M3FN", bytes: Craft.file("{\"x\":" + Craft.entry("F8_E4M3FN", [4], 0, 4) + "}", data: Craft.bytes(4)),
                rejection: .exactly(.unknownDType(tensor: "x", dtype: "F8_E4M3FN"))),
    HostileCase(name: "dtype f32 (lowercase)", bytes: Craft.file("{\"x\":" + Craft.entry("f32", [1], 0, 4) + "}", data: Craft.bytes(4)),
                rejection: .exactly(.unknownDType(tensor: "x", dtype: "f32"))),
    HostileCase(name: "dtype empty", bytes: Craft.file("{\"x\":" + Craft.entry("", [1], 0, 4) + "}", data: Craft.bytes(4)),
                rejection: .exactly(.unknownDType(tensor: "x", dtype: ""))),
    HostileCase(name: "dtype is a number", bytes: Craft.file("{\"x\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    // serde types: shape is a list of usize, data_offsets a pair of usize.
    HostileCase(name: "negative dim", bytes: Craft.file("{\"x\":" + Craft.entry("F32", [-1, 4], 0, 4) + "}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "float dim 1.0", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "exponent dim 1e0", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "dim 2^64 (beyond UInt64)", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "3 data_offsets", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "1 data_offset", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "negative data_offset", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "data_offsets as strings", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "missing shape", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "missing dtype", bytes: Craft.file("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "missing data_offsets", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "shape is a string", bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"shape\":\"[1]\",\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidTensorEntry(tensor: "x")),
    HostileCase(name: "tensor entry is a number", bytes: Craft.file("{\"x\":4}"), rejection: .invalidTensorEntry(tensor: "x")),
    // Checked arithmetic.
    HostileCase(name: "dims [2^32, 2^32, 16] overflow",
                bytes: Craft.file("{\"x\":" + Craft.entry("F32", [1 << 32, 1 << 32, 16], 0, 16) + "}", data: Craft.bytes(16)),
                rejection: .exactly(.sizeOverflow(tensor: "x"))),
    HostileCase(name: "dims [2^62] F32: bit count overflows",
                bytes: Craft.file("{\"x\":" + Craft.entry("F32", [1 << 62], 0, 16) + "}", data: Craft.bytes(16)),
                rejection: .exactly(.sizeOverflow(tensor: "x"))),
    HostileCase(name: "dim 2^64-1 (above Int.max)",
                bytes: Craft.file("{\"x\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .exactly(.sizeOverflow(tensor: "x"))),
    // Sub-byte dtypes must fill whole bytes.
    HostileCase(name: "F4 with 3 elements (misaligned)", bytes: Craft.file("{\"x\":" + Craft.entry("F4", [3], 0, 2) + "}", data: Craft.bytes(2)),
                rejection: .exactly(.misalignedSlice(tensor: "x"))),
    HostileCase(name: "F6_E2M3 with 3 elements (misaligned)", bytes: Craft.file("{\"x\":" + Craft.entry("F6_E2M3", [3], 0, 3) + "}", data: Craft.bytes(3)),
                rejection: .exactly(.misalignedSlice(tensor: "x"))),
    // Size, contiguity and coverage.
    HostileCase(name: "size mismatch (F32 [4] in 12 bytes)", bytes: Craft.file("{\"x\":" + Craft.entry("F32", [4], 0, 12) + "}", data: Craft.bytes(12)),
                rejection: .exactly(.sizeMismatch(tensor: "x", expected: 16, actual: 12))),
    HostileCase(name: "size mismatch (F4 [2,3] in 6 bytes)", bytes: Craft.file("{\"x\":" + Craft.entry("F4", [2, 3], 0, 6) + "}", data: Craft.bytes(6)),
                rejection: .exactly(.sizeMismatch(tensor: "x", expected: 3, actual: 6))),
    HostileCase(name: "gap between tensors",
                bytes: Craft.file("{\"a\":" + Craft.entry("F32", [1], 0, 4) + ",\"b\":" + Craft.entry("F32", [1], 8, 12) + "}", data: twoTensorData),
                rejection: .exactly(.invalidOffset(tensor: "b"))),
    HostileCase(name: "overlapping tensors",
                bytes: Craft.file("{\"a\":" + Craft.entry("F32", [2], 0, 8) + ",\"b\":" + Craft.entry("F32", [2], 4, 12) + "}", data: twoTensorData),
                rejection: .exactly(.invalidOffset(tensor: "b"))),
    HostileCase(name: "two tensors aliasing one region",
                bytes: Craft.file("{\"a\":" + Craft.entry("F32", [1], 0, 4) + ",\"b\":" + Craft.entry("F32", [1], 0, 4) + "}", data: Craft.bytes(4)),
                rejection: .invalidOffset(oneOf: ["a", "b"])),
    HostileCase(name: "first tensor not at 0", bytes: Craft.file("{\"a\":" + Craft.entry("F32", [1], 4, 8) + "}", data: Craft.bytes(8)),
                rejection: .exactly(.invalidOffset(tensor: "a"))),
    HostileCase(name: "end < start", bytes: Craft.file("{\"a\":" + Craft.entry("F32", [1], 8, 4) + "}", data: Craft.bytes(8)),
                rejection: .exactly(.invalidOffset(tensor: "a"))),
    HostileCase(name: "trailing bytes after the last tensor", bytes: Craft.file(trailingJSON, data: Craft.bytes(20)),
                rejection: .exactly(.incompleteCoverage(dataBytes: 20, covered: 16)),
                streamRejection: .exactly(.incompleteCoverage(dataBytes: 17, covered: 16))),
    HostileCase(name: "trailing byte after an empty header", bytes: Craft.file("{}", data: [0x20]),
                rejection: .exactly(.incompleteCoverage(dataBytes: 1, covered: 0))),
    HostileCase(name: "data section shorter than the tensors", bytes: Craft.file(shortJSON, data: Craft.bytes(12)),
                rejection: .exactly(.incompleteCoverage(dataBytes: 12, covered: 16)),
                streamRejection: .exactly(.truncated(expected: 8 + Craft.headerLength(shortJSON) + 16, actual: 8 + Craft.headerLength(shortJSON) + 12))),
    // Duplicate keys are disallowed by the format (the reference lets identical ones through).
    HostileCase(name: "duplicate tensor key, different offsets",
                bytes: Craft.file("{\"a\":" + Craft.entry("F32", [1], 0, 4) + ",\"a\":" + Craft.entry("F32", [1], 4, 8) + "}", data: Craft.bytes(8)),
                rejection: .invalidJSON(containing: "duplicate key")),
    HostileCase(name: "duplicate tensor key, identical entries (the reference accepts it)",
                bytes: Craft.file("{\"a\":" + Craft.entry("F32", [1], 0, 4) + ",\"a\":" + Craft.entry("F32", [1], 0, 4) + "}", data: Craft.bytes(4)),
                rejection: .invalidJSON(containing: "duplicate key")),
    HostileCase(name: "duplicate __metadata__", bytes: Craft.file("{\"__metadata__\":{},\"__metadata__\":{}}"),
                rejection: .invalidJSON(containing: "duplicate key")),
    HostileCase(name: "duplicate key inside __metadata__ (the reference accepts it)", bytes: Craft.file("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"),
                rejection: .invalidJSON(containing: "duplicate key")),
    HostileCase(name: "duplicate key inside a tensor entry",
                bytes: Craft.file("{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                rejection: .invalidJSON(containing: "duplicate key")),
    // Nesting.
    HostileCase(name: "objects nested 1000 deep",
                bytes: Craft.file("{\"x\":" + String(repeating: "{\"y\":", count: 999) + "1" + String(repeating: "}", count: 1000) + "}"),
                rejection: .invalidJSON(containing: "nesting deeper")),
    HostileCase(name: "arrays nested 1000 deep",
                bytes: Craft.file(String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)),
                rejection: .invalidJSON(containing: "nesting deeper")),
    HostileCase(name: "arrays nested 100,000 deep, unclosed",
                bytes: Craft.file("{\"__metadata__\":" + String(repeating: "[", count: 100_000)),
                rejection: .invalidJSON(containing: "nesting deeper")),
]

private let acceptedCases: [AcceptedCase] = [
    AcceptedCase(name: "minimal", bytes: Craft.file("{\"x\":" + Craft.entry("F32", [1], 0, 4) + "}", data: Craft.bytes(4)), tensors: ["x"]),
    AcceptedCase(name: "only __metadata__", bytes: Craft.file("{\"__metadata__\":{\"format\":\"pt\"}}"), tensors: [], metadata: ["format": "pt"]),
    AcceptedCase(name: "{}", bytes: Craft.file("{}"), tensors: []),
    AcceptedCase(name: "space-padded header", bytes: Craft.file("{\"x\":" + Craft.entry("BF16", [3], 0, 6) + "}", data: Craft.bytes(6), padTo8: true),
                 tensors: ["x"]),
    AcceptedCase(name: "leading whitespace", bytes: Craft.file(" \t\r\n{\"x\":" + Craft.entry("U8", [2], 0, 2) + "}", data: Craft.bytes(2)), tensors: ["x"]),
    AcceptedCase(name: "newline-padded header", bytes: Craft.file("{\"x\":" + Craft.entry("U8", [2], 0, 2) + "}\n\n\n", data: Craft.bytes(2)), tensors: ["x"]),
    AcceptedCase(name: "keys out of offset order",
                 bytes: Craft.file("{\"b\":" + Craft.entry("F32", [1], 4, 8) + ",\"__metadata__\":{\"k\":\"v\"},\"a\":" + Craft.entry("F32", [1], 0, 4) + "}",
                                   data: Craft.bytes(8)),
                 tensors: ["a", "b"], metadata: ["k": "v"]),
    AcceptedCase(name: "zero-size tensor [0,4] at [0,0]",
                 bytes: Craft.file("{\"y\":" + Craft.entry("F32", [1], 0, 4) + ",\"empty\":" + Craft.entry("F32", [0, 4], 0, 0) + "}", data: Craft.bytes(4)),
                 tensors: ["empty", "y"]),
    AcceptedCase(name: "zero-size tensor with a huge other dim", bytes: Craft.file("{\"e\":" + Craft.entry("F32", [0, 1 << 40], 0, 0) + "}"), tensors: ["e"]),
    AcceptedCase(name: "rank-0 scalar", bytes: Craft.file("{\"s\":" + Craft.entry("F32", [], 0, 4) + "}", data: Craft.bytes(4)), tensors: ["s"]),
    AcceptedCase(name: "F4 [2,3] in 3 bytes", bytes: Craft.file("{\"x\":" + Craft.entry("F4", [2, 3], 0, 3) + "}", data: Craft.bytes(3)), tensors: ["x"]),
    AcceptedCase(name: "F6_E2M3 x4 in 3 bytes", bytes: Craft.file("{\"x\":" + Craft.entry("F6_E2M3", [4], 0, 3) + "}", data: Craft.bytes(3)), tensors: ["x"]),
    AcceptedCase(name: "F8_E4M3 and F8_E8M0",
                 bytes: Craft.file("{\"a\":" + Craft.entry("F8_E4M3", [2], 0, 2) + ",\"b\":" + Craft.entry("F8_E8M0", [2], 2, 4) + "}", data: Craft.bytes(4)),
                 tensors: ["a", "b"]),
    AcceptedCase(name: "\"__metadata__\": null", bytes: Craft.file("{\"__metadata__\":null,\"x\":" + Craft.entry("I8", [1], 0, 1) + "}", data: [7]),
                 tensors: ["x"]),
    AcceptedCase(name: "extra field in a tensor entry",
                 bytes: Craft.file("{\"x\":{\"dtype\":\"F16\",\"extra\":[1,{\"z\":null}],\"shape\":[2],\"data_offsets\":[0,4]}}", data: Craft.bytes(4)),
                 tensors: ["x"]),
    AcceptedCase(name: "odd header length (unaligned data)", bytes: Craft.file("{\"x\":" + Craft.entry("BF16", [2], 0, 4) + "}", data: Craft.bytes(4)),
                 tensors: ["x"], unalignedData: true),
    AcceptedCase(name: "escapes and non-ASCII in names and metadata",
                 bytes: Craft.file("{\"__metadata__\":{\"caf\\u00e9\":\"l\\u00ednea\\n\\\"q\\\" \u{1F600}\"},\"w\\/\u{00E9}\":" + Craft.entry("U8", [1], 0, 1) + "}", data: [9]),
                 tensors: ["w/\u{00E9}"], metadata: ["caf\u{00E9}": "l\u{00ED}nea\n\"q\" \u{1F600}"]),
    AcceptedCase(name: "every dtype",
                 bytes: {
                     var json = "{"
                     var offset = 0
                     for (i, d) in DType.allCases.enumerated() {
                         let size = 8 * d.bitWidth / 8
                         json += (i == 0 ? "" : ",") + "\"t\(i)\":" + Craft.entry(d.rawValue, [8], offset, offset + size)
                         offset += size
                     }
                     return Craft.file(json + "}", data: Craft.bytes(offset), padTo8: true)
                 }(),
                 tensors: DType.allCases.indices.map { "t\($0)" }),
]

/// The `SafetensorsError` inside a reader failure, if that is what it is.
private func safetensorsError(_ error: any Error) -> SafetensorsError? {
    if let e = error as? SafetensorsError { return e }
    return (error as? FileError)?.cause as? SafetensorsError
}

/// What reading a whole file produced.
private struct ReadOutcome {
    var names: [String]
    var metadata: [String: String]
    var tensorBytes: [[UInt8]]
    var sha256: String?
    var byteCount: UInt64
}

/// Reads every tensor in file order, then `finish()`.
private func readAll(_ reader: SafetensorsReader) throws -> ReadOutcome {
    var bytes: [[UInt8]] = []
    for t in reader.header.tensors { bytes.append(try reader.withBytes(of: t) { Array($0) }) }
    let (sha, count) = try reader.finish()
    return ReadOutcome(
        names: reader.header.tensors.map(\.name),
        metadata: Dictionary(reader.header.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }),
        tensorBytes: bytes, sha256: sha, byteCount: count)
}

/// How the bytes reach a stream reader.
enum StreamSource: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case pipe
    var testDescription: String { rawValue }
}

/// Opens `bytes` as a stream and reads it all, returning the outcome or the error.
private func readAsStream(_ bytes: [UInt8], source: StreamSource) -> Swift.Result<ReadOutcome, any Error> {
    switch source {
    case .memory:
        return Swift.Result { try readAll(try SafetensorsReader(stream: ChunkedMemoryStream(bytes), displayPath: "<memory>")) }
    case .pipe:
        _ = signal(SIGPIPE, SIG_IGN)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return .failure(ToolRunnerError(message: "pipe failed")) }
        let readEnd = fds[0]
        let writeEnd = fds[1]
        let writer = ToolRunner.runOnThread {
            var offset = 0
            bytes.withUnsafeBytes { buffer in
                while offset < buffer.count {
                    let n = write(writeEnd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        break  // the reader gave up early (EPIPE)
                    }
                    offset += n
                }
            }
            close(writeEnd)
        }
        let result = Swift.Result<ReadOutcome, any Error> {
            try readAll(try SafetensorsReader(stream: FileDescriptorStream(fd: readEnd, path: "<pipe>"), displayPath: "<pipe>"))
        }
        close(readEnd)
        writer.wait()
        return result
    }
}

@Suite("Hostile safetensors inputs")
struct HostileInputTests {
    @Test("the mapped reader rejects", arguments: hostileCases)
    fileprivate func mappedReaderRejects(_ c: HostileCase) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write(c.bytes, to: "hostile.safetensors")
            do {
                let reader = try SafetensorsReader(path: path)
                Issue.record("accepted a file that must be rejected (\(c.rejection)): \(reader.header.tensors.map(\.name))")
            } catch let error as FileError {
                #expect(error.path == path, "the error must name the file")
                let cause = try #require(error.cause as? SafetensorsError, "unexpected error \(error)")
                #expect(c.rejection.matches(cause), "got \(cause), expected \(c.rejection)")
                #expect(!error.description.isEmpty && error.description.hasPrefix(path + ": "))
            }
        }
    }

    @Test("a stream gives the same verdict", arguments: hostileCases, StreamSource.allCases)
    fileprivate func streamReaderRejects(_ c: HostileCase, source: StreamSource) throws {
        let mapped: SafetensorsError? = try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write(c.bytes, to: "hostile.safetensors")
            do {
                _ = try SafetensorsReader(path: path)
                return SafetensorsError?.none
            } catch let error as FileError {
                return error.cause as? SafetensorsError
            }
        }
        let mappedError = try #require(mapped, "the mapped reader must reject \(c.name)")
        switch readAsStream(c.bytes, source: source) {
        case .success(let outcome):
            Issue.record("the stream reader accepted a file that must be rejected: \(outcome.names)")
        case .failure(let error):
            let cause = try #require(safetensorsError(error), "unexpected error \(error)")
            if let streamRejection = c.streamRejection {
                #expect(streamRejection.matches(cause), "got \(cause), expected \(streamRejection)")
            } else {
                #expect(cause == mappedError, "stream said \(cause) but the mapped file said \(mappedError)")
            }
            if let fileError = error as? FileError {
                #expect(fileError.path == (source == .memory ? "<memory>" : "<pipe>"))
            } else {
                Issue.record("stream errors must be wrapped in FileError naming the input: \(error)")
            }
        }
    }

    @Test("the coverage check of a stream happens in finish()")
    func streamCoverageCheckedInFinish() throws {
        let bytes = Craft.file(trailingJSON, data: Craft.bytes(20))
        let reader = try SafetensorsReader(stream: ChunkedMemoryStream(bytes), displayPath: "<memory>")
        #expect(reader.header.tensors.map(\.name) == ["a"])
        let tensor = try #require(reader.header.tensor(named: "a"))
        #expect(try reader.withBytes(of: tensor) { Array($0) } == Craft.bytes(16))
        do {
            _ = try reader.finish()
            Issue.record("finish() accepted trailing bytes")
        } catch {
            #expect(safetensorsError(error) == .incompleteCoverage(dataBytes: 17, covered: 16))
        }
    }

    @Test("the mapped reader accepts", arguments: acceptedCases)
    fileprivate func mappedReaderAccepts(_ c: AcceptedCase) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write(c.bytes, to: "ok.safetensors")
            let reader = try SafetensorsReader(path: path)
            #expect(reader.isRandomAccess)
            let outcome = try readAll(reader)
            #expect(outcome.names == c.tensors)
            #expect(outcome.metadata == c.metadata)
            #expect(outcome.byteCount == UInt64(c.bytes.count))
            if c.unalignedData { #expect(reader.dataStart % 2 == 1, "the data section must start at an odd offset") }
            // The tensors' bytes are exactly the data section, in order.
            #expect(outcome.tensorBytes.flatMap { $0 } == Array(c.bytes[reader.dataStart...]))
            for t in reader.header.tensors {
                #expect(UInt64(t.elementCount * t.dtype.bitWidth / 8) == t.dataOffsets.upperBound - t.dataOffsets.lowerBound)
            }
        }
    }

    @Test("a stream accepts the same files with the same bytes and hash", arguments: acceptedCases, StreamSource.allCases)
    fileprivate func streamReaderAccepts(_ c: AcceptedCase, source: StreamSource) throws {
        let mapped = try ToolRunner.withTemporaryDirectory { dir in
            try readAll(try SafetensorsReader(path: try dir.write(c.bytes, to: "ok.safetensors")))
        }
        let streamed = try readAsStream(c.bytes, source: source).get()
        #expect(streamed.names == mapped.names)
        #expect(streamed.metadata == mapped.metadata)
        #expect(streamed.tensorBytes == mapped.tensorBytes)
        #expect(streamed.sha256 == mapped.sha256)
        #expect(streamed.byteCount == UInt64(c.bytes.count))
    }

    @Test("-0 is not an unsigned integer", arguments: [
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[0,0]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-0,4]}}",
    ])
    func negativeZeroIsRejected(_ json: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let bytes = Craft.file(json, data: json.contains("[1]") ? Craft.bytes(4) : [])
            let path = try dir.write(bytes, to: "negzero.safetensors")
            // safetensors 0.8.0: "invalid type: floating point `-0.0`, expected usize" (serde_json reads -0 as a float).
            do {
                let reader = try SafetensorsReader(path: path)
                Issue.record("accepted -0 as a dimension or offset: \(reader.header.tensors.map(\.shape))")
            } catch let error as FileError {
                let cause = error.cause as? SafetensorsError
                #expect(cause.map(Rejection.invalidTensorEntry(tensor: "x").matches) == true, "got \(error)")
            }
        }
    }

    @Test("special shapes are read as written")
    func specialShapes() throws {
        let bytes = Craft.file(
            "{\"s\":" + Craft.entry("F32", [], 0, 4) + ",\"e\":" + Craft.entry("F32", [0, 4], 4, 4) + ",\"f\":" + Craft.entry("F4", [2, 3], 4, 7) + "}",
            data: Craft.bytes(7))
        try ToolRunner.withTemporaryDirectory { dir in
            let header = try SafetensorsReader(path: try dir.write(bytes, to: "s.safetensors")).header
            let scalar = try #require(header.tensor(named: "s"))
            #expect(scalar.shape == [] && scalar.elementCount == 1 && scalar.byteCount == 4)
            let empty = try #require(header.tensor(named: "e"))
            #expect(empty.shape == [0, 4] && empty.elementCount == 0 && empty.byteCount == 0)
            let f4 = try #require(header.tensor(named: "f"))
            #expect(f4.dtype == .f4 && f4.shape == [2, 3] && f4.byteCount == 3)
        }
    }
}

// MARK: - Through the command line

/// A hostile input given to `nvfp4 quantize`.
private struct CLIHostileCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var arguments: [String] = []
    /// Feed the file through stdin (`-`) instead of naming it.
    var viaStdin = false
    /// Texts stderr must contain besides `error: ` and the input's name.
    var mentions: [String]
    var testDescription: String { name + (viaStdin ? " (stdin)" : "") }
}

private let cliHostileCases: [CLIHostileCase] = [
    CLIHostileCase(name: "truncated JSON", bytes: Craft.file("{\"layer.weight\":{\"dtype\":\"BF16\""), mentions: ["not valid JSON"]),
    CLIHostileCase(name: "header length past EOF", bytes: Craft.raw(length: 1000, Array("{}".utf8)), mentions: ["1000"]),
    CLIHostileCase(name: "file shorter than 8 bytes", bytes: [1, 2, 3], mentions: ["3 bytes"]),
    CLIHostileCase(name: "gap between tensors",
                   bytes: Craft.file("{\"a\":" + Craft.entry("F32", [1], 0, 4) + ",\"b\":" + Craft.entry("F32", [1], 8, 12) + "}", data: twoTensorData),
                   mentions: ["\"b\""]),
    CLIHostileCase(name: "unknown dtype", bytes: Craft.file("{\"x\":" + Craft.entry("F8_E4M3FN", [4], 0, 4) + "}", data: Craft.bytes(4)),
                   mentions: ["F8_E4M3FN"]),
    CLIHostileCase(name: "trailing bytes", bytes: Craft.file(trailingJSON, data: Craft.bytes(20)), mentions: ["cover"]),
    // Through stdin the data is checked as it streams: the file must hold something to quantize
    // (a file with nothing to quantize is refused from its header, before any data).
    CLIHostileCase(name: "data section shorter than a quantizable weight", bytes: Array(Craft.weightFile(Craft.ordinary).dropLast(12)), viaStdin: true,
                   mentions: ["ended"]),
    CLIHostileCase(name: "nothing to quantize", bytes: Craft.file(trailingJSON, data: Craft.bytes(16)), viaStdin: true,
                   mentions: ["no tensor would be quantized", "not a .weight tensor"]),
    CLIHostileCase(name: "trailing bytes after a quantizable weight",
                   bytes: Craft.weightFile(Craft.ordinary) + [0, 0, 0, 0], viaStdin: true, mentions: ["cover"]),
    // Weights the codec cannot take.
    CLIHostileCase(name: "bf16 NaN at index 200", bytes: Craft.weightFile { $0 == 200 ? .nan : Craft.ordinary($0) },
                   mentions: ["\"layer.weight\"", "index 200", "row 12, column 8"]),
    CLIHostileCase(name: "bf16 +Inf at index 37", bytes: Craft.weightFile { $0 == 37 ? .infinity : Craft.ordinary($0) },
                   mentions: ["\"layer.weight\"", "index 37", "row 2, column 5"]),
    CLIHostileCase(name: "bf16 -Inf at 5 before a NaN at 100 (the first is named)",
                   bytes: Craft.weightFile { $0 == 5 ? -.infinity : $0 == 100 ? .nan : Craft.ordinary($0) },
                   mentions: ["\"layer.weight\"", "index 5 "]),
    CLIHostileCase(name: "f32 NaN at the last index, after a kept bias",
                   bytes: Craft.weightFile(dtype: .f32, withBias: true) { $0 == 255 ? .nan : Craft.ordinary($0) },
                   mentions: ["\"layer.weight\"", "index 255", "row 15, column 15"]),
    CLIHostileCase(name: "bf16 +Inf in single-level mode", bytes: Craft.weightFile { $0 == 37 ? .infinity : Craft.ordinary($0) },
                   arguments: ["--no-global-scale"], mentions: ["\"layer.weight\"", "index 37"]),
    CLIHostileCase(name: "bf16 NaN at index 200", bytes: Craft.weightFile { $0 == 200 ? .nan : Craft.ordinary($0) }, viaStdin: true,
                   mentions: ["\"layer.weight\"", "index 200"]),
    CLIHostileCase(name: "all-zero weight in two-level mode", bytes: Craft.weightFile { _ in 0 },
                   mentions: ["\"layer.weight\"", "zero", "--no-global-scale"]),
    CLIHostileCase(name: "all-zero weight in two-level mode, after a kept bias", bytes: Craft.weightFile(withBias: true) { _ in 0 },
                   mentions: ["\"layer.weight\"", "zero"]),
    CLIHostileCase(name: "amax too small for two-level scaling (one bf16 subnormal)",
                   bytes: Craft.weightFile { $0 == 3 ? Float(bitPattern: 0x0001_0000) : 0 }, mentions: ["\"layer.weight\"", "too small"]),
]

extension HostileInputTests {
    @Test("nvfp4 quantize exits 2 with one error line and leaves no file", arguments: cliHostileCases)
    fileprivate func quantizeRejects(_ c: CLIHostileCase) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(c.bytes, to: "bad.safetensors")
            let outFolder = try dir.makeSubfolder("out")
            let output = outFolder + "/out.safetensors"
            let result = try ToolRunner.run(
                ["quantize", c.viaStdin ? "-" : input, "-o", output] + c.arguments,
                stdin: c.viaStdin ? c.bytes : nil)
            #expect(result.status == 2, "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
            #expect(result.stderrLines.count == 1, "stderr must be exactly one line: \(result.stderr)")
            #expect(result.stderr.hasSuffix("\n"))
            let line = result.stderrLines.first ?? ""
            #expect(line.hasPrefix("error: "), "\(line)")
            #expect(line.contains(c.viaStdin ? "<stdin>" : input), "the error must name the input: \(line)")
            for text in c.mentions { #expect(line.contains(text), "expected \"\(text)\" in: \(line)") }
            // Nothing is left behind: no output, no manifest, no `.out.safetensors.XXXXXX`.
            let left = try dir.contents(of: "out")
            #expect(left == [], "left in the output folder: \(left)")
            #expect(try dir.contents() == ["bad.safetensors", "out"])
            #expect(try ToolRunner.readFile(input) == c.bytes, "the input must be untouched")
        }
    }

    @Test("an all-zero weight quantizes with --no-global-scale")
    func allZeroSingleLevelSucceeds() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(Craft.weightFile { _ in 0 }, to: "zero.safetensors")
            let output = dir.file("out.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", output, "--no-global-scale", "--quiet"])
            #expect(result.status == 0, "\(result)")
            #expect(result.stderr.isEmpty, "\(result)")
            #expect(try dir.contents() == ["out.manifest.json", "out.safetensors", "zero.safetensors"])
            let reader = try SafetensorsReader(path: output)
            #expect(reader.header.tensors.map(\.name).sorted() == ["layer._weight_qdata", "layer._weight_scale"])
            let qdata = try #require(reader.header.tensor(named: "layer._weight_qdata"))
            #expect(qdata.shape == [16, 8])
            #expect(try reader.withBytes(of: qdata) { $0.allSatisfy { $0 == 0 } }, "zeros quantize to zero nibbles")
            let scale = try #require(reader.header.tensor(named: "layer._weight_scale"))
            #expect(scale.dtype == .f8E4M3)
            #expect(try reader.withBytes(of: scale) { $0.allSatisfy { $0 == 0 || $0 == 0x08 } },
                    "an all-zero block gets the smallest scale 2^-6 (0x08); padding is 0")
        }
    }
}
