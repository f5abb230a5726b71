/// The parts of a GGUF file that an imatrix reader needs (format: ggml's `docs/gguf.md`,
/// reader `ggml/src/gguf.cpp`): the header, the key/value metadata (string and `UINT32` values
/// kept, every other value skipped with its size checked), the tensor infos, and the data
/// section, which starts at the end of the tensor infos padded to `general.alignment` (default 32).
///
/// Layout, all little-endian: `"GGUF"`, `u32` version (2 or 3), `u64` tensor count, `u64`
/// key/value count; each key/value is a string key (`u64` length, bytes), a `u32` value type and
/// the value (an array is `u32` element type, `u64` count, elements); each tensor info is a name,
/// `u32` dimension count (1…4), `u64` sizes (innermost first), `u32` ggml type and `u64` offset
/// into the data section. Every size and count is checked against the file before it is used.
struct GGUFFile {
    /// One tensor: only `F32` (ggml type 0) tensors are accepted.
    struct Tensor: Equatable {
        var name: String
        /// ggml's order: `shape[0]` is the innermost (contiguous) dimension.
        var shape: [Int]
        /// Absolute offset of the data in the file.
        var offset: Int
        var elementCount: Int
    }

    /// ggml's limit on tensor names (`GGML_MAX_NAME`, including the terminating zero).
    static let maximumTensorNameBytes = 63
    /// A bound on key and string lengths; imatrix metadata is a few short strings.
    static let maximumStringBytes = 1 << 20
    static let magic: [UInt8] = Array("GGUF".utf8)

    private(set) var strings: [String: String] = [:]
    private(set) var uint32s: [String: UInt32] = [:]
    private(set) var tensors: [Tensor] = []
    private let bytes: UnsafeRawBufferPointer

    /// Whether `bytes` starts with the GGUF magic.
    static func sniff(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && Array(bytes[0..<4]) == magic
    }

    /// Parses the header, metadata and tensor infos of `bytes` (the caller keeps them alive).
    ///
    /// - Throws: ``ImportanceStatistics/Problem`` naming what is wrong (and the tensor, where one is).
    init(_ bytes: UnsafeRawBufferPointer) throws(ImportanceStatistics.Problem) {
        self.bytes = bytes
        var cursor = LittleEndianCursor(bytes)
        do { try parse(&cursor) } catch let truncated as LittleEndianCursor.Truncated {
            throw ImportanceStatistics.Problem(reason: "truncated GGUF file: \(truncated.what) needs \(truncated.needed) bytes at offset \(truncated.offset), the file has \(bytes.count)")
        } catch let problem as ImportanceStatistics.Problem { throw problem } catch {
            throw ImportanceStatistics.Problem(reason: "\(error)")
        }
    }

    private mutating func parse(_ cursor: inout LittleEndianCursor) throws {
        func fail(_ reason: String) -> ImportanceStatistics.Problem { ImportanceStatistics.Problem(reason: reason) }
        guard try cursor.bytes(4, "magic") == GGUFFile.magic else { throw fail("not a GGUF file (no \"GGUF\" magic)") }
        let version = try cursor.uint32("version")
        guard version == 2 || version == 3 else {
            throw fail(version & 0xFFFF == 0 ? "big-endian GGUF files are not supported (version field \(version))" : "unsupported GGUF version \(version); expected 2 or 3")
        }
        let tensorCount = try cursor.uint64("tensor count")
        let keyCount = try cursor.uint64("metadata count")
        // Smallest key/value: 8-byte length, 1-byte key, 4-byte type, 1-byte value.
        guard keyCount <= UInt64(cursor.remaining / 14) else { throw fail("metadata count \(keyCount) exceeds what the file can hold") }
        for _ in 0..<Int(keyCount) { try readKeyValue(&cursor) }
        if let type = strings["general.type"], type != "imatrix" {
            throw fail("a GGUF \(type) file, not an imatrix (general.type is \"\(type)\")")
        }
        let alignment = Int(uint32s["general.alignment"] ?? 32)
        guard alignment > 0, alignment & (alignment - 1) == 0 else { throw fail("general.alignment \(alignment) is not a power of 2") }
        // Smallest tensor info: 8-byte length, 1-byte name, 4-byte rank, one 8-byte size, 4-byte type, 8-byte offset.
        guard tensorCount <= UInt64(cursor.remaining / 33) else { throw fail("tensor count \(tensorCount) exceeds what the file can hold") }
        var infos: [(tensor: Tensor, relative: UInt64)] = []
        var seen = Set<String>()
        for _ in 0..<Int(tensorCount) {
            let name = try readString(&cursor, "tensor name", limit: GGUFFile.maximumTensorNameBytes)
            guard seen.insert(name).inserted else { throw fail("duplicate tensor \"\(name)\"") }
            let rank = try cursor.uint32("rank of \(name)")
            guard (1...4).contains(rank) else { throw fail("tensor \"\(name)\" has \(rank) dimensions; expected 1 to 4") }
            var shape: [Int] = []
            var elements = 1
            for _ in 0..<rank {
                let size = try cursor.uint64("shape of \(name)")
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(clamping: size))
                guard size <= UInt64(Int32.max), !overflow, product <= bytes.count / 4 else {
                    throw fail("tensor \"\(name)\" has shape sizes larger than the file")
                }
                shape.append(Int(size))
                elements = product
            }
            let type = try cursor.uint32("type of \(name)")
            guard type == 0 else { throw fail("tensor \"\(name)\" has ggml type \(type); imatrix tensors are F32 (type 0)") }
            let relative = try cursor.uint64("offset of \(name)")
            infos.append((Tensor(name: name, shape: shape, offset: 0, elementCount: elements), relative))
        }
        let dataStart = (cursor.offset + alignment - 1) / alignment * alignment
        for (tensor, relative) in infos {
            var placed = tensor
            guard relative % UInt64(alignment) == 0, relative <= UInt64(bytes.count),
                  dataStart + Int(relative) + tensor.elementCount * 4 <= bytes.count else {
                throw fail("tensor \"\(tensor.name)\" data (offset \(relative), \(tensor.elementCount * 4) bytes) lies outside the file or is misaligned")
            }
            placed.offset = dataStart + Int(relative)
            tensors.append(placed)
        }
    }

    /// The values of `tensor`, in file order.
    func floats(_ tensor: Tensor) throws(ImportanceStatistics.Problem) -> [Float] {
        var cursor = LittleEndianCursor(bytes, offset: tensor.offset)
        do { return try cursor.floats(tensor.elementCount, tensor.name) } catch {
            throw ImportanceStatistics.Problem(reason: "truncated GGUF file: tensor \"\(tensor.name)\" data")
        }
    }

    private func readString(_ cursor: inout LittleEndianCursor, _ what: String, limit: Int) throws -> String {
        let length = try cursor.uint64("length of \(what)")
        guard length <= UInt64(limit) else { throw ImportanceStatistics.Problem(reason: "\(what) of \(length) bytes exceeds the limit of \(limit)") }
        try cursor.require(Int(length), what)
        guard let text = String(validating: try cursor.bytes(Int(length), what), as: UTF8.self) else {
            throw ImportanceStatistics.Problem(reason: "\(what) is not UTF-8")
        }
        return text
    }

    /// Byte size of a fixed-size GGUF value type, `nil` for string, array or an unknown type.
    private static func fixedSize(_ type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: 1        // UINT8, INT8, BOOL
        case 2, 3: 2           // UINT16, INT16
        case 4, 5, 6: 4        // UINT32, INT32, FLOAT32
        case 10, 11, 12: 8     // UINT64, INT64, FLOAT64
        default: nil
        }
    }

    private mutating func readKeyValue(_ cursor: inout LittleEndianCursor) throws {
        let key = try readString(&cursor, "metadata key", limit: GGUFFile.maximumStringBytes)
        guard !key.isEmpty, strings[key] == nil, uint32s[key] == nil else {
            throw ImportanceStatistics.Problem(reason: key.isEmpty ? "empty metadata key" : "duplicate metadata key \"\(key)\"")
        }
        let type = try cursor.uint32("type of \(key)")
        guard key != "general.alignment" || type == 4 else {
            throw ImportanceStatistics.Problem(reason: "metadata \"general.alignment\" has GGUF type \(type); it must be UINT32 (4)")
        }
        switch type {
        case 4: uint32s[key] = try cursor.uint32(key)
        case 8: strings[key] = try readString(&cursor, key, limit: GGUFFile.maximumStringBytes)
        case 9:
            let element = try cursor.uint32("element type of \(key)")
            let count = try cursor.uint64("element count of \(key)")
            if let size = GGUFFile.fixedSize(element) {
                guard count <= UInt64(cursor.remaining / size) else { throw LittleEndianCursor.Truncated(what: key, offset: cursor.offset, needed: Int(clamping: count) &* size) }
                try cursor.skip(Int(count) * size, key)
            } else if element == 8 {
                guard count <= UInt64(cursor.remaining / 8) else { throw LittleEndianCursor.Truncated(what: key, offset: cursor.offset, needed: Int(clamping: count) &* 8) }
                for _ in 0..<Int(count) { _ = try readString(&cursor, "element of \(key)", limit: GGUFFile.maximumStringBytes) }
            } else {
                throw ImportanceStatistics.Problem(reason: "metadata \"\(key)\" is an array of unsupported GGUF type \(element)")
            }
        default:
            guard let size = GGUFFile.fixedSize(type) else {
                throw ImportanceStatistics.Problem(reason: "metadata \"\(key)\" has unknown GGUF type \(type)")
            }
            try cursor.skip(size, key)
        }
    }
}
