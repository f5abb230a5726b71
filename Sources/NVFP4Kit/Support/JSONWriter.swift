/// Deterministic JSON text for a ``JSONValue``.
///
/// Keys keep their order, numbers use Swift's shortest round-trip form, and non-ASCII text is
/// written as UTF-8. Two styles: Python's `json.dumps` default (`", "` and `": "` on one line,
/// which torchao writes into safetensors metadata) and indented for files people read.
public enum JSONStyle: Sendable {
    /// `json.dumps(obj)`: one line, `", "` between items and `": "` after keys.
    case python
    /// One line with no spaces, as serde writes.
    case compact
    /// Two-space indentation, one member per line, a trailing newline.
    case pretty
}

extension JSONValue {
    /// Renders the value as JSON text.
    ///
    /// - Parameter style: The layout.
    /// - Returns: The text. `.pretty` ends with a newline.
    public func serialized(_ style: JSONStyle = .compact) -> String {
        String(decoding: serializedBytes(style), as: UTF8.self)
    }

    /// The UTF-8 bytes of ``serialized(_:)``.
    public func serializedBytes(_ style: JSONStyle = .compact) -> [UInt8] {
        var out = JSONOutput<[UInt8]>(sink: [])
        write(to: &out, style: style, indent: 0)
        if style == .pretty { out.append(UInt8(ascii: "\n")) }
        return out.sink
    }

    func write<Sink: JSONByteSink>(to out: inout JSONOutput<Sink>, style: JSONStyle, indent: Int) {
        switch self {
        case .null: out.append("null")
        case .bool(let b): out.append(b ? "true" : "false")
        case .integer(.negative(let v)): out.append(String(v))
        case .integer(.nonNegative(let v)): out.append(v)
        case .number(let d): out.append(JSONValue.numberText(d))
        case .string(let s): out.appendQuoted(s)
        case .array(let elements):
            JSONValue.writeArray(count: elements.count, style: style, indent: indent, to: &out) { elements[$0] }
        case .object(let members):
            JSONValue.writeObject(count: members.count, style: style, indent: indent, to: &out, key: { members[$0].key }) { i, out, indent in
                members[i].value.write(to: &out, style: style, indent: indent)
            }
        }
    }

    /// An array of `count` elements, each built by `element` only when it is written (so a
    /// million-entry array never exists as one tree), laid out as ``write(to:style:indent:)`` does.
    static func writeArray<Sink: JSONByteSink>(
        count: Int, style: JSONStyle, indent: Int, to out: inout JSONOutput<Sink>, element: (Int) -> JSONValue
    ) {
        writeContainer(UInt8(ascii: "["), UInt8(ascii: "]"), count: count, style: style, indent: indent, to: &out) { i, out, indent in
            element(i).write(to: &out, style: style, indent: indent)
        }
    }

    /// An object of `count` members: their keys, and `value` writing member `i`'s value at the
    /// indentation it is given, laid out as ``write(to:style:indent:)`` does.
    static func writeObject<Sink: JSONByteSink>(
        count: Int, style: JSONStyle, indent: Int, to out: inout JSONOutput<Sink>, key: (Int) -> String,
        value: (Int, inout JSONOutput<Sink>, Int) -> Void
    ) {
        writeContainer(UInt8(ascii: "{"), UInt8(ascii: "}"), count: count, style: style, indent: indent, to: &out) { i, out, indent in
            out.appendQuoted(key(i))
            out.append(style == .compact ? ":" : ": ")
            value(i, &out, indent)
        }
    }

    /// `open`, the `count` items `item` writes (separated, one per line when pretty), `close`.
    private static func writeContainer<Sink: JSONByteSink>(
        _ open: UInt8, _ close: UInt8, count: Int, style: JSONStyle, indent: Int, to out: inout JSONOutput<Sink>,
        item: (Int, inout JSONOutput<Sink>, Int) -> Void
    ) {
        out.append(open)
        guard count > 0 else { return out.append(close) }
        for i in 0..<count {
            if i > 0 { out.append(style == .python ? ", " : ",") }
            if style == .pretty { out.newline(indent: indent + 1) }
            item(i, &out, indent + 1)
        }
        if style == .pretty { out.newline(indent: indent) }
        out.append(close)
    }

    /// Shortest round-trip text; integral values keep a `.0` so readers see a float.
    static func numberText(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        return "\(d)"
    }
}

/// Where JSON bytes go: a buffer, or a counter that only measures (``JSONOutput``).
protocol JSONByteSink {
    mutating func append(_ byte: UInt8)
    mutating func append(contentsOf bytes: UnsafeRawBufferPointer)
}

extension Array: JSONByteSink where Element == UInt8 {
    mutating func append(contentsOf bytes: UnsafeRawBufferPointer) { self += bytes }
}

/// JSON bytes written to an ``OutputSink`` through a 1 MiB buffer, so a large document is never
/// held whole; the first write error is kept and thrown by ``finish()``.
final class JSONFileSink: JSONByteSink {
    let sink: any OutputSink
    private var buffer: [UInt8] = []
    private var error: (any Error)?
    private static let capacity = 1 << 20

    init(_ sink: any OutputSink) {
        self.sink = sink
        buffer.reserveCapacity(JSONFileSink.capacity)
    }

    func append(_ byte: UInt8) {
        buffer.append(byte)
        if buffer.count >= JSONFileSink.capacity { flush() }
    }

    func append(contentsOf bytes: UnsafeRawBufferPointer) {
        buffer += bytes
        if buffer.count >= JSONFileSink.capacity { flush() }
    }

    private func flush() {
        if error == nil {
            do { try buffer.withUnsafeBytes { try sink.write($0) } } catch { self.error = error }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes what is buffered; throws the first error any write met.
    func finish() throws {
        flush()
        if let error { throw error }
    }
}

/// Counts bytes without storing them: the length of a document that need not exist.
struct JSONByteCounter: JSONByteSink {
    var count = 0
    mutating func append(_ byte: UInt8) { count += 1 }
    mutating func append(contentsOf bytes: UnsafeRawBufferPointer) { count += bytes.count }
}

/// JSON text written straight as UTF-8 bytes: strings that need no escape (every tensor name)
/// are copied whole, so a header of a million tensors is written at memory speed.
struct JSONOutput<Sink: JSONByteSink> {
    var sink: Sink

    mutating func append(_ byte: UInt8) { sink.append(byte) }

    mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { sink.append(contentsOf: UnsafeRawBufferPointer($0)) }
    }

    /// A non-negative integer in decimal, without an intermediate string.
    mutating func append(_ value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var v = value
            var i = buffer.count
            repeat {
                i -= 1
                buffer[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            } while v > 0
            sink.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[i...]))
        }
    }

    mutating func newline(indent: Int) {
        append(UInt8(ascii: "\n"))
        for _ in 0..<(indent * 2) { append(UInt8(ascii: " ")) }
    }

    /// `s` as a JSON string: quotes, the two-character escapes, `\u00XX` for other control
    /// characters, everything else as its UTF-8 bytes.
    mutating func appendQuoted(_ s: String) {
        append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            var start = 0
            for (i, c) in bytes.enumerated() where c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") {
                sink.append(contentsOf: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[start..<i])))
                switch c {
                case UInt8(ascii: "\""): append("\\\"")
                case UInt8(ascii: "\\"): append("\\\\")
                case 0x0A: append("\\n")
                case 0x0D: append("\\r")
                case 0x09: append("\\t")
                case 0x08: append("\\b")
                case 0x0C: append("\\f")
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    append("\\u00")
                    append(hex[Int(c >> 4)])
                    append(hex[Int(c & 0xF)])
                }
                start = i + 1
            }
            sink.append(contentsOf: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[start...])))
        }
        append(UInt8(ascii: "\""))
    }
}
