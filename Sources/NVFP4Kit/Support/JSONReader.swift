/// The state of one parse: a cursor over UTF-8 bytes held as given (an array, or a mapped
/// header's bytes, read in place), with the strict rules ``JSONParser`` documents. Every read is
/// preceded by a check against `bytes.count`.
struct JSONReader<Bytes: RandomAccessCollection> where Bytes.Element == UInt8, Bytes.Index == Int {
    let bytes: Bytes
    var index = 0
    private var depth = 0
    private let maxDepth: Int
    /// Keys whose members ``parseObject()`` checks but leaves out.
    var droppedKeys: Set<String> = []

    init(bytes: Bytes, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// The string that starts at `offset`, parsed before without error.
    func key(at offset: Int) -> String {
        var again = JSONReader(bytes: bytes, maxDepth: maxDepth)
        again.index = offset
        return (try? again.parseString()) ?? ""
    }

    func error(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(offset: index, reason: reason) }

    mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    mutating func parseValue() throws(JSONSyntaxError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of JSON") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    private mutating func expectLiteral(_ word: String) throws(JSONSyntaxError) {
        let expected = Array(word.utf8)
        guard index + expected.count <= bytes.count else { throw error("unexpected end of JSON") }
        for i in 0..<expected.count where bytes[index + i] != expected[i] { throw error("invalid literal") }
        index += expected.count
    }

    mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        if depth > maxDepth { throw error("nesting deeper than \(maxDepth)") }
    }

    private mutating func parseObject() throws(JSONSyntaxError) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = []
        try walkObject { (parser: inout JSONReader, key: String) throws(JSONSyntaxError) in
            if parser.droppedKeys.contains(key) { try parser.skipValue() } else { members.append((key, try parser.parseValue())) }
        }
        return .object(members)
    }

    /// Walks the object that starts here: checks each key (a repeated key is an error; keys are
    /// found again by their offset, not kept, so a million keys cost 16 bytes each) and calls
    /// `member` at the start of its value (which must consume it).
    mutating func walkObject(_ member: (inout JSONReader, String) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) {
        var keyOffsets: [Int] = []
        var seen = NameIndex(capacity: 8)
        try walkList(closing: UInt8(ascii: "}")) { (parser: inout JSONReader) throws(JSONSyntaxError) in
            guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "\"") else { throw parser.error("expected a key") }
            let keyOffset = parser.index
            let key = try parser.parseString()
            keyOffsets.append(keyOffset)
            let reader = parser
            guard seen.insert(Int32(keyOffsets.count - 1), named: key, nameOf: { reader.key(at: keyOffsets[Int($0)]) }) == nil else {
                throw JSONSyntaxError(offset: keyOffset, reason: "duplicate key \"\(key)\"")
            }
            parser.skipWhitespace()
            guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: ":") else { throw parser.error("expected ':'") }
            parser.index += 1
            parser.skipWhitespace()
            try member(&parser, key)
        }
    }

    /// Walks the array or object that starts here (its opening bracket at `index`), calling `item`
    /// at the start of each element or member (which must consume it), up to `closing`.
    private mutating func walkList(closing: UInt8, _ item: (inout JSONReader) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) {
        try enter()
        defer { depth -= 1 }
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == closing {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            try item(&self)
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of JSON") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == closing {
                index += 1
                return
            } else {
                throw error("expected ',' or '\(Character(Unicode.Scalar(closing)))'")
            }
        }
    }

    /// Checks one value like ``parseValue()`` without keeping it; an array is walked an element
    /// at a time, so a huge one is never held.
    private mutating func skipValue() throws(JSONSyntaxError) {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "[") else {
            _ = try parseValue()
            return
        }
        try walkList(closing: UInt8(ascii: "]")) { (parser: inout JSONReader) throws(JSONSyntaxError) in try parser.skipValue() }
    }

    private mutating func parseArray() throws(JSONSyntaxError) -> JSONValue {
        var elements: [JSONValue] = []
        try walkList(closing: UInt8(ascii: "]")) { (parser: inout JSONReader) throws(JSONSyntaxError) in elements.append(try parser.parseValue()) }
        return .array(elements)
    }

    private mutating func parseHex4() throws(JSONSyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("unexpected end of JSON") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    mutating func parseString() throws(JSONSyntaxError) -> String {
        index += 1  // opening quote
        // Fast path: printable ASCII without escapes (every tensor name) becomes a String in one step.
        var end = index
        while end < bytes.count, bytes[end] >= 0x20, bytes[end] < 0x7F, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\") {
            end += 1
        }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            defer { index = end + 1 }
            return String(decoding: bytes[index..<end], as: UTF8.self)
        }
        var scalars = String.UnicodeScalarView()
        while true {
            guard index < bytes.count else { throw error("unterminated string") }
            let c = bytes[index]
            switch c {
            case UInt8(ascii: "\""):
                index += 1
                return String(scalars)
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw error("unterminated string") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else { throw error("lone surrogate in \\u escape") }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("lone surrogate in \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(code) {
                        throw error("lone surrogate in \\u escape")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                    scalars.append(scalar)
                default:
                    throw error("invalid escape")
                }
            case 0x00..<0x20:
                throw error("control character in string")
            case 0x00..<0x80:
                scalars.append(Unicode.Scalar(c))
                index += 1
            default:
                scalars.append(try decodeUTF8Scalar())
            }
        }
    }

    /// Decodes one multi-byte UTF-8 sequence, rejecting overlong forms and surrogates.
    private mutating func decodeUTF8Scalar() throws(JSONSyntaxError) -> Unicode.Scalar {
        let lead = bytes[index]
        let length: Int
        var code: UInt32
        switch lead {
        case 0xC2...0xDF: length = 2; code = UInt32(lead & 0x1F)
        case 0xE0...0xEF: length = 3; code = UInt32(lead & 0x0F)
        case 0xF0...0xF4: length = 4; code = UInt32(lead & 0x07)
        default: throw error("invalid UTF-8")
        }
        guard index + length <= bytes.count else { throw error("invalid UTF-8") }
        for i in 1..<length {
            let b = bytes[index + i]
            guard b & 0xC0 == 0x80 else { throw error("invalid UTF-8") }
            code = code << 6 | UInt32(b & 0x3F)
        }
        let minimum: UInt32 = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000
        guard code >= minimum, code <= 0x10FFFF, let scalar = Unicode.Scalar(code) else {
            throw error("invalid UTF-8")
        }
        index += length
        return scalar
    }

    private mutating func parseNumber() throws(JSONSyntaxError) -> JSONValue {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        let digitsStart = index
        guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if isInteger {
            let digits = String(decoding: bytes[digitsStart..<index], as: UTF8.self)
            if negative {
                if let v = Int64(text) { return .integer(.negative(v)) }  // "-0" stays negative: not a size
            } else if let v = UInt64(digits) {
                return .integer(.nonNegative(v))
            }
        }
        guard let d = Double(text), d.isFinite else { throw JSONSyntaxError(offset: start, reason: "number out of range") }
        return .number(d)
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}

extension JSONReader {
    /// ``JSONParser/forEachMember(ofObject:_:)`` on this reader's bytes.
    mutating func forEachMember<E: Error>(_ body: (String, JSONValue) throws(E) -> Void) throws(JSONObjectMemberError<E>) -> Bool {
        // The member handler's error stops the walk; it is reported as itself, not as bad JSON.
        var memberError: E?
        do throws(JSONSyntaxError) {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else {
                _ = try parseValue()
                skipWhitespace()
                if index != bytes.count { throw error("trailing characters") }
                return false
            }
            try walkObject { (parser: inout JSONReader, key: String) throws(JSONSyntaxError) in
                let value = try parser.parseValue()
                do throws(E) { try body(key, value) } catch {
                    memberError = error
                    throw parser.error("stopped by the member handler")
                }
            }
            skipWhitespace()
            if index != bytes.count { throw error("trailing characters") }
        } catch {
            if let memberError { throw .member(memberError) }
            throw .syntax(error)
        }
        return true
    }
}
