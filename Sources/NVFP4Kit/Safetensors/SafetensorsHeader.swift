/// One tensor entry of a safetensors header.
public struct TensorInfo: Equatable, Sendable {
    // The one-byte dtype is stored last, so a record that embeds a TensorInfo packs its own small
    // fields into the padding after it.
    // The name lives in a buffer shared by the header's names (``NameArena``).
    private(set) var storedName: TensorName
    public var shape: [Int]
    /// Byte range inside the data section (after the 8-byte length and the JSON header).
    public var dataOffsets: Range<UInt64>
    public var dtype: DType

    public init(name: String, dtype: DType, shape: [Int], dataOffsets: Range<UInt64>) {
        self.init(storedName: TensorName(name), dtype: dtype, shape: shape, dataOffsets: dataOffsets)
    }

    init(storedName: TensorName, dtype: DType, shape: [Int], dataOffsets: Range<UInt64>) {
        self.storedName = storedName
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    /// The tensor's name (its header key).
    public var name: String {
        get { storedName.string }
        set { storedName = TensorName(newValue) }
    }

    public static func == (a: TensorInfo, b: TensorInfo) -> Bool {
        a.dtype == b.dtype && a.shape == b.shape && a.dataOffsets == b.dataOffsets
            && (a.storedName.isSameSpan(as: b.storedName) || a.name == b.name)
    }

    /// Number of elements (1 for a rank-0 tensor).
    public var elementCount: Int { shape.reduce(1, *) }

    /// Bytes of data.
    public var byteCount: Int { Int(dataOffsets.upperBound - dataOffsets.lowerBound) }
}

/// A validated safetensors header: every rule of the reference reader has been checked, so code
/// that holds one can trust its offsets and sizes.
public struct SafetensorsHeader: Sendable {
    /// The largest header the reference reader accepts.
    public static let maxHeaderLength: UInt64 = 100_000_000

    /// `__metadata__` entries in file order.
    public var metadata: [(key: String, value: String)]
    /// Tensors sorted by data offset (the order their bytes appear in the file).
    public var tensors: [TensorInfo]
    /// Bytes the tensors cover: the data section's required size.
    public var dataByteCount: UInt64 { tensors.last?.dataOffsets.upperBound ?? 0 }

    /// Looks up a tensor by name.
    public func tensor(named name: String) -> TensorInfo? { index.key(of: name) { tensors[Int($0)].name }.map { tensors[Int($0)] } }

    /// The value of a `__metadata__` key.
    public func metadataValue(_ key: String) -> String? { metadata.first { $0.key == key }?.value }

    private var index: NameIndex

    /// Checks the 8-byte little-endian length prefix.
    ///
    /// - Parameters:
    ///   - length: The decoded prefix.
    ///   - fileSize: The whole file's size, or `nil` for a stream of unknown size.
    /// - Throws: ``SafetensorsError`` when the length is too large or runs past the end.
    public static func validateLength(_ length: UInt64, fileSize: UInt64?) throws(SafetensorsError) {
        if let fileSize, fileSize < 8 { throw .headerTooSmall(fileSize: fileSize) }
        let tooLarge = length > maxHeaderLength
        let pastEnd = fileSize.map { length > $0 - 8 } ?? false
        guard tooLarge || pastEnd else { return }
        // The 8 bytes were not a plausible length: say what the file is, when its first bytes tell.
        if let kind = FormatSniffer.recognize(prefix: withUnsafeBytes(of: length.littleEndian) { Array($0) }) { throw .notSafetensors(kind) }
        if tooLarge { throw .headerTooLarge(length: length) }
        throw .headerLengthPastEnd(length: length, fileSize: fileSize!)
    }

    /// Parses and validates the JSON header.
    ///
    /// Offsets are checked to be contiguous from 0 with no gaps or overlap, sizes to match shape
    /// and dtype with overflow checks. Coverage of the data section is checked separately with
    /// ``validateCoverage(dataSectionBytes:)`` because a stream's size is known only at its end.
    ///
    /// - Parameter json: The header bytes (without the length prefix).
    /// - Throws: ``SafetensorsError``.
    public init<C: Collection<UInt8>>(json: C) throws(SafetensorsError) {
        var metadata: [(key: String, value: String)] = []
        var tensors: [TensorInfo] = []
        // Room for every entry up front: growing a million-entry list would hold it twice.
        tensors.reserveCapacity(SafetensorsHeader.entryBound(json))
        // Names are shorter than the header that holds them.
        let names = NameArena(reservingCapacity: min(json.count, 1 << 20))
        // Member by member: a million-tensor header is never held as one JSON tree.
        let isObject: Bool
        do {
            isObject = try JSONParser.forEachMember(ofObject: json) { (key: String, value: JSONValue) throws(SafetensorsError) in
                if key == "__metadata__" {
                    switch value {
                    case .null: break
                    case .object(let entries):
                        for (k, v) in entries {
                            guard let s = v.stringValue else { throw .invalidMetadata(key: k) }
                            metadata.append((k, s))
                        }
                    default: throw .invalidMetadata(key: nil)
                    }
                    return
                }
                tensors.append(try SafetensorsHeader.tensorInfo(name: key, entry: value, names: names))
            }
        } catch {
            switch error {
            case .syntax(let e): throw .invalidJSON(e)
            case .member(let e): throw e
            }
        }
        guard isObject else { throw .headerNotObject }
        names.trim()
        // A bound above the count (a metadata value spelled "data_offsets") leaves spare room.
        if tensors.capacity > tensors.count + tensors.count / 8 {
            var compact: [TensorInfo] = []
            compact.reserveCapacity(tensors.count)
            compact.append(contentsOf: tensors)
            tensors = compact
        }
        tensors.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound) }
        var cursor: UInt64 = 0
        for t in tensors {
            if t.dataOffsets.lowerBound != cursor { throw .invalidOffset(tensor: t.name) }
            cursor = t.dataOffsets.upperBound
        }
        self.metadata = metadata
        self.tensors = tensors
        self.index = NameIndex(tensors.lazy.map(\.name))
    }

    /// An upper bound on the number of tensor entries in header text `json`: each entry has one
    /// `"data_offsets"` key, and these 14 bytes can only be a JSON string equal to data_offsets
    /// (a quote inside a string is escaped). Counted in one pass, no allocation.
    static func entryBound<C: Collection<UInt8>>(_ json: C) -> Int {
        let key = Array("\"data_offsets\"".utf8)
        func count<S: Sequence<UInt8>>(_ bytes: S) -> Int {
            var found = 0, matched = 0
            for byte in bytes {
                if byte == key[matched] {
                    matched += 1
                    if matched == key.count { found += 1; matched = 0 }
                } else {
                    // The key's only repeated byte is its quote, at both ends: a mismatch restarts there.
                    matched = byte == key[0] ? 1 : 0
                }
            }
            return found
        }
        return json.withContiguousStorageIfAvailable(count) ?? count(json)
    }

    /// Builds a header from already-valid parts (used by writers and tests).
    public init(metadata: [(key: String, value: String)], tensors: [TensorInfo]) {
        self.metadata = metadata
        self.tensors = tensors.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }
        self.index = NameIndex(self.tensors.lazy.map(\.name))
    }

    /// Checks that the tensors cover the data section exactly (no trailing bytes).
    public func validateCoverage(dataSectionBytes: UInt64) throws(SafetensorsError) {
        if dataSectionBytes != dataByteCount {
            throw .incompleteCoverage(dataBytes: dataSectionBytes, covered: dataByteCount)
        }
    }

    private static func tensorInfo(name: String, entry: JSONValue, names: NameArena) throws(SafetensorsError) -> TensorInfo {
        guard entry.objectValue != nil else { throw .invalidTensorEntry(tensor: name, reason: "entry is not an object") }
        guard let dtypeText = entry["dtype"]?.stringValue else {
            throw .invalidTensorEntry(tensor: name, reason: "missing or non-string dtype")
        }
        guard let dtype = DType(rawValue: dtypeText) else { throw .unknownDType(tensor: name, dtype: dtypeText) }
        guard let shapeValues = entry["shape"]?.arrayValue else {
            throw .invalidTensorEntry(tensor: name, reason: "missing or non-array shape")
        }
        var shape: [Int] = []
        var elements: UInt64 = 1
        for dim in shapeValues {
            guard let d = dim.unsignedValue else {
                throw .invalidTensorEntry(tensor: name, reason: "shape holds a value that is not a non-negative integer")
            }
            guard d <= UInt64(Int.max) else { throw .sizeOverflow(tensor: name) }
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            if overflow { throw .sizeOverflow(tensor: name) }
            elements = product
            shape.append(Int(d))
        }
        guard let offsets = entry["data_offsets"]?.arrayValue, offsets.count == 2,
            let begin = offsets[0].unsignedValue, let end = offsets[1].unsignedValue
        else {
            throw .invalidTensorEntry(tensor: name, reason: "data_offsets must be two non-negative integers")
        }
        if end < begin { throw .invalidOffset(tensor: name) }
        let (bits, overflow) = elements.multipliedReportingOverflow(by: UInt64(dtype.bitWidth))
        if overflow || elements > UInt64(Int.max) / 8 { throw .sizeOverflow(tensor: name) }
        if bits % 8 != 0 { throw .misalignedSlice(tensor: name) }
        if end - begin != bits / 8 { throw .sizeMismatch(tensor: name, expected: bits / 8, actual: end - begin) }
        return TensorInfo(storedName: names.append(name), dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }
}
