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
        var json = JSONOutput(sink: [UInt8]())
        SafetensorsLayoutPlan.writeJSON(tensors: tensors, metadata: metadata, to: &json)
        let padded = (json.sink.count + 7) / 8 * 8
        var header = [UInt8]()
        header.reserveCapacity(8 + padded)
        withUnsafeBytes(of: UInt64(padded).littleEndian) { header.append(contentsOf: $0) }
        header += json.sink
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - json.sink.count))
        headerBytes = header
    }

    /// The length of the padded JSON header ``init(tensors:metadata:)`` would write (what the
    /// 8-byte prefix holds), measured without building it.
    public static func headerLength<S: Sequence<PlannedTensor>>(tensors: S, metadata: [(key: String, value: String)]) -> UInt64 {
        var counter = JSONOutput(sink: JSONByteCounter())
        writeJSON(tensors: tensors, metadata: metadata, to: &counter)
        return UInt64((counter.sink.count + 7) / 8 * 8)
    }

    /// Writes the header ``init(tensors:metadata:)`` would build (8-byte length, padded JSON) to
    /// `sink` without holding it: one pass measures, a second streams through a 1 MiB buffer, so
    /// a million-tensor header costs no memory of its own.
    ///
    /// - Returns: The size of the data section the header describes.
    public static func writeHeader<C: Collection<PlannedTensor>>(
        tensors: C, metadata: [(key: String, value: String)], to sink: any OutputSink
    ) throws -> Int {
        var counter = JSONOutput(sink: JSONByteCounter())
        let dataBytes = writeJSON(tensors: tensors, metadata: metadata, to: &counter)
        let padded = (counter.sink.count + 7) / 8 * 8
        try withUnsafeBytes(of: UInt64(padded).littleEndian) { try sink.write($0) }
        var out = JSONOutput(sink: JSONFileSink(sink))
        writeJSON(tensors: tensors, metadata: metadata, to: &out)
        for _ in counter.sink.count..<padded { out.append(UInt8(ascii: " ")) }
        try out.sink.finish()
        return dataBytes
    }

    /// `{"__metadata__":{…},"name":{"dtype":…,"shape":[…],"data_offsets":[b,e]},…}`, compact,
    /// as serde writes it (the metadata member only when there is metadata).
    /// Tensors are laid out contiguously in order; returns the data section's size.
    @discardableResult
    static func writeJSON<Sink: JSONByteSink, S: Sequence<PlannedTensor>>(
        tensors: S, metadata: [(key: String, value: String)], to out: inout JSONOutput<Sink>
    ) -> Int {
        out.append(UInt8(ascii: "{"))
        var first = true
        if !metadata.isEmpty {
            out.append("\"__metadata__\":{")
            for (i, entry) in metadata.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.appendQuoted(entry.key)
                out.append(UInt8(ascii: ":"))
                out.appendQuoted(entry.value)
            }
            out.append(UInt8(ascii: "}"))
            first = false
        }
        var cursor = 0
        for t in tensors {
            let range = cursor..<(cursor + t.byteCount)
            cursor = range.upperBound
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.appendQuoted(t.name)
            out.append(":{\"dtype\":")
            out.appendQuoted(t.dtype.rawValue)
            out.append(",\"shape\":[")
            for (i, d) in t.shape.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(UInt64(d))
            }
            out.append("],\"data_offsets\":[")
            out.append(UInt64(range.lowerBound))
            out.append(UInt8(ascii: ","))
            out.append(UInt64(range.upperBound))
            out.append("]}")
        }
        out.append(UInt8(ascii: "}"))
        return cursor
    }

    /// Size of the data section.
    public var dataByteCount: Int { offsets.last?.upperBound ?? 0 }

    /// Size of the whole file.
    public var fileByteCount: Int { headerBytes.count + dataByteCount }
}
