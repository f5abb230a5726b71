/// A bounded little-endian reader over a byte buffer: every read checks the bytes it needs
/// against what is left before touching memory, so a hostile length or count ends in
/// ``Truncated`` rather than a read past the end. The only unsafe memory access of the imatrix
/// readers lives here.
struct LittleEndianCursor {
    /// A read needed more bytes than the buffer has left.
    struct Truncated: Error, Sendable, Equatable {
        /// What was being read.
        var what: String
        /// Where it started and how many bytes it needed.
        var offset: Int
        var needed: Int
    }

    private let bytes: UnsafeRawBufferPointer
    /// The next byte to read.
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Bytes left after ``offset``.
    var remaining: Int { bytes.count - offset }

    /// Fails unless `count` more bytes are available.
    func require(_ count: Int, _ what: String) throws(Truncated) {
        guard count >= 0, count <= remaining else { throw Truncated(what: what, offset: offset, needed: count) }
    }

    mutating func skip(_ count: Int, _ what: String) throws(Truncated) {
        try require(count, what)
        offset += count
    }

    mutating func uint32(_ what: String) throws(Truncated) -> UInt32 {
        try require(4, what)
        defer { offset += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    mutating func int32(_ what: String) throws(Truncated) -> Int32 {
        Int32(bitPattern: try uint32(what))
    }

    mutating func uint64(_ what: String) throws(Truncated) -> UInt64 {
        try require(8, what)
        defer { offset += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// `count` raw bytes.
    mutating func bytes(_ count: Int, _ what: String) throws(Truncated) -> [UInt8] {
        try require(count, what)
        defer { offset += count }
        return Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
    }

    /// `count` little-endian fp32 values.
    mutating func floats(_ count: Int, _ what: String) throws(Truncated) -> [Float] {
        guard count >= 0, count <= remaining / 4 else { throw Truncated(what: what, offset: offset, needed: count &* 4) }
        let start = offset
        offset += count * 4
        return (0..<count).map { i in
            Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self)))
        }
    }
}
