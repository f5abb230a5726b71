/// A JSON value that keeps object keys in document order and integers exact.
///
/// Foundation's decoders lose both (they reorder keys, silently merge duplicate keys and accept
/// `1.0` where an integer is required), and a safetensors header must be read exactly, so the
/// project parses and writes JSON itself.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number written without a fraction or exponent that fits in `Int64` or `UInt64`.
    case integer(IntegerLiteral)
    /// Any other number, as written in the source text.
    case number(Double)
    case string(String)
    case array([JSONValue])
    /// Members in document order. Duplicate keys are rejected by the parser.
    case object([(key: String, value: JSONValue)])

    /// An exact integer: negative values as `Int64`, others as `UInt64`.
    public enum IntegerLiteral: Equatable, Sendable {
        case negative(Int64)
        case nonNegative(UInt64)
    }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The member named `key` of an object, or `nil`.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// The string payload, or `nil` for other kinds.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The value as a non-negative integer, or `nil` for other kinds.
    public var unsignedValue: UInt64? {
        if case .integer(.nonNegative(let v)) = self { return v }
        return nil
    }

    /// The value as a `Double` for any number, or `nil`.
    public var doubleValue: Double? {
        switch self {
        case .number(let d): return d
        case .integer(.negative(let v)): return Double(v)
        case .integer(.nonNegative(let v)): return Double(v)
        default: return nil
        }
    }

    /// The value as a `Bool`, or `nil`.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The elements of an array, or `nil`.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The members of an object, or `nil`.
    public var objectValue: [(key: String, value: JSONValue)]? {
        if case .object(let o) = self { return o }
        return nil
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) {
        self = value < 0 ? .integer(.negative(Int64(value))) : .integer(.nonNegative(UInt64(value)))
    }

    /// An integer value from any fixed-width integer.
    public static func int<T: BinaryInteger>(_ value: T) -> JSONValue {
        value < 0 ? .integer(.negative(Int64(value))) : .integer(.nonNegative(UInt64(value)))
    }

    /// A number, or `null` where the value is not finite (JSON has no infinities).
    public static func finite(_ value: Double) -> JSONValue {
        value.isFinite ? .number(value) : .null
    }
}
