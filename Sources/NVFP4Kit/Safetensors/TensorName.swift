/// The UTF-8 bytes of many tensor names, one after another: a header's names stored in one
/// buffer instead of one heap string each (a million names of ~40 bytes cost 40 MB, not 80).
///
/// Filled by the one code that creates it (the header parser, or a single name) and never
/// changed after the first ``TensorName`` that refers to it is handed out, so it is shared across
/// threads without a lock.
final class NameArena: @unchecked Sendable {
    private(set) var bytes: [UInt8] = []

    init(reservingCapacity capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Gives back the spare capacity left by growth (before any name is read on another thread).
    func trim() {
        guard bytes.capacity > bytes.count + bytes.count / 8 else { return }
        var exact: [UInt8] = []
        exact.reserveCapacity(bytes.count)
        exact.append(contentsOf: bytes)
        bytes = exact
    }

    /// Appends `name`'s UTF-8 bytes; returns where they are.
    func append(_ name: String) -> TensorName {
        let offset = bytes.count
        bytes.append(contentsOf: name.utf8)
        return TensorName(arena: self, offset: offset, length: bytes.count - offset)
    }
}

/// A tensor name held as a span of a ``NameArena``: 16 bytes, like a `String`, but with no
/// allocation of its own when it comes from a header.
struct TensorName: Sendable {
    private let arena: NameArena
    /// Offset in the low 32 bits, length in the high 32 (a header's names are bounded by its
    /// 100 MB limit, so any name it holds fits).
    private let span: UInt64

    fileprivate init(arena: NameArena, offset: Int, length: Int) {
        precondition(offset <= Int(UInt32.max) && length <= Int(UInt32.max), "tensor names beyond 4 GiB")
        self.arena = arena
        span = UInt64(offset) | UInt64(length) << 32
    }

    /// A name of its own (not from a header).
    init(_ name: String) { self = NameArena(reservingCapacity: name.utf8.count).append(name) }

    var string: String {
        let offset = Int(span & UInt64(UInt32.max))
        let length = Int(span >> 32)
        return arena.bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[offset..<(offset + length)]), as: UTF8.self) }
    }

    /// Whether two names are the same span (then equal without reading them).
    func isSameSpan(as other: TensorName) -> Bool { arena === other.arena && span == other.span }
}
