/// A tensor to be written: its entry in the output header.
public struct PlannedTensor: Equatable, Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    /// Bytes of data for this shape and dtype.
    public var byteCount: Int { shape.reduce(1, *) * dtype.bitWidth / 8 }
}

/// A complete output header, computed before any tensor data is produced so that tensors can be
/// streamed in order (to a pipe) or written at known offsets.
///
/// Tensors are stored in the order given; the JSON header lists `__metadata__` first and then the
/// tensors in that order, and is padded with spaces to a multiple of 8 bytes as the reference
/// writer does.
public struct SafetensorsLayoutPlan: Sendable {
    public var tensors: [PlannedTensor]
    public var metadata: [(key: String, value: String)]
    /// The 8-byte length prefix followed by the padded JSON header.
    public let headerBytes: [UInt8]
    /// Each tensor's byte range inside the data section.
    public let offsets: [Range<Int>]

    /// Lays out `tensors` contiguously in the given order.
    public init(tensors: [PlannedTensor], metadata: [(key: String, value: String)]) {
        self.tensors = tensors
        self.metadata = metadata
        var offsets: [Range<Int>] = []
        var cursor = 0
        for t in tensors {
            offsets.append(cursor..<(cursor + t.byteCount))
            cursor += t.byteCount
        }
        self.offsets = offsets
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            members.append(("__metadata__", .object(metadata.map { ($0.key, JSONValue.string($0.value)) })))
        }
        for (t, range) in zip(tensors, offsets) {
            members.append((t.name, .object([
                ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { JSONValue.int($0) })),
                ("data_offsets", .array([.int(range.lowerBound), .int(range.upperBound)])),
            ])))
        }
        var json = Array(JSONValue.object(members).serialized(.compact).utf8)
        let padded = (json.count + 7) / 8 * 8
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - json.count))
        var header = [UInt8]()
        header.reserveCapacity(8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { header.append(contentsOf: $0) }
        header.append(contentsOf: json)
        headerBytes = header
    }

    /// Size of the data section.
    public var dataByteCount: Int { offsets.last?.upperBound ?? 0 }

    /// Size of the whole file.
    public var fileByteCount: Int { headerBytes.count + dataByteCount }
}
