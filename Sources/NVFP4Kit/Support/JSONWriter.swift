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
        var out = ""
        write(to: &out, style: style, indent: 0)
        if style == .pretty { out += "\n" }
        return out
    }

    private func write(to out: inout String, style: JSONStyle, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(.negative(let v)): out += String(v)
        case .integer(.nonNegative(let v)): out += String(v)
        case .number(let d): out += JSONValue.numberText(d)
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let elements):
            if elements.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, element) in elements.enumerated() {
                if i > 0 { out += style == .python ? ", " : "," }
                if style == .pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                element.write(to: &out, style: style, indent: indent + 1)
            }
            if style == .pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .object(let members):
            if members.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += style == .python ? ", " : "," }
                if style == .pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSONValue.writeString(member.key, to: &out)
                out += style == .compact ? ":" : ": "
                member.value.write(to: &out, style: style, indent: indent + 1)
            }
            if style == .pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        }
    }

    /// Shortest round-trip text; integral values keep a `.0` so readers see a float.
    static func numberText(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        return "\(d)"
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
