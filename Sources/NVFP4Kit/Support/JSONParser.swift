/// Why a JSON text was rejected, with the byte offset where parsing stopped.
public struct JSONSyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "\(reason) at byte \(offset)" }
}

/// Why ``JSONParser/forEachMember(ofObject:_:)`` stopped: bad JSON, or the member handler's error.
public enum JSONObjectMemberError<E: Error>: Error {
    case syntax(JSONSyntaxError)
    case member(E)
}

/// A strict RFC 8259 parser over UTF-8 bytes.
///
/// It rejects duplicate object keys, invalid UTF-8, lone surrogates, control characters in
/// strings, trailing garbage and nesting deeper than ``maxDepth``; it keeps key order and exact
/// integers. Leading and trailing JSON whitespace (space, tab, CR, LF) is allowed, as in serde.
public enum JSONParser {
    /// The deepest nesting accepted; deeper input is hostile, not a checkpoint.
    public static let maxDepth = 64


    /// Parses one JSON document.
    ///
    /// - Parameter bytes: The UTF-8 text.
    /// - Returns: The value.
    /// - Throws: ``JSONSyntaxError`` for anything that is not exactly one valid JSON value.
    public static func parse<C: Collection<UInt8>>(_ bytes: C) throws(JSONSyntaxError) -> JSONValue {
        try parse(bytes, maxDepth: maxDepth)
    }

    /// Parses one JSON document nested at most `maxDepth` levels (a tighter bound for small,
    /// known shapes such as torchao's metadata descriptors).
    public static func parse<C: Collection<UInt8>>(_ bytes: C, maxDepth: Int) throws(JSONSyntaxError) -> JSONValue {
        var parser = JSONReader(bytes: Array(bytes), maxDepth: min(maxDepth, JSONParser.maxDepth))
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.index != parser.bytes.count { throw parser.error("trailing characters") }
        return value
    }

    /// Parses a document that must be one JSON object, handing each member to `body` as soon as it
    /// is parsed, so a huge object (a safetensors header of a million tensors) never exists as one
    /// ``JSONValue``. The rules are those of ``parse(_:)``: duplicate keys, trailing characters and
    /// deep nesting are errors.
    ///
    /// - Returns: `false` (and calls `body` never) when the document is valid JSON but not an object.
    /// - Throws: ``JSONSyntaxError``, or what `body` throws.
    public static func forEachMember<C: Collection<UInt8>, E: Error>(
        ofObject bytes: C, _ body: (String, JSONValue) throws(E) -> Void
    ) throws(JSONObjectMemberError<E>) -> Bool {
        // A mapped header is read where it lies: a 100 MB header is not copied first.
        if let mapped = bytes as? UnsafeRawBufferPointer {
            var parser = JSONReader(bytes: mapped, maxDepth: maxDepth)
            return try parser.forEachMember(body)
        }
        var parser = JSONReader(bytes: Array(bytes), maxDepth: maxDepth)
        return try parser.forEachMember(body)
    }

    /// Parses one JSON document, leaving out of the result every object member whose key is in
    /// `droppedKeys`, at any depth: such values are checked as strictly as the rest but never
    /// built, an array element at a time (a manifest's per-tensor lists, when only its head is
    /// needed).
    public static func parse<C: Collection<UInt8>>(_ bytes: C, droppingMembers droppedKeys: Set<String>) throws(JSONSyntaxError) -> JSONValue {
        var parser = JSONReader(bytes: Array(bytes), maxDepth: maxDepth)
        parser.droppedKeys = droppedKeys
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.index != parser.bytes.count { throw parser.error("trailing characters") }
        return value
    }

    /// Parses one JSON document from a Swift string.
    public static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        try parse(Array(text.utf8))
    }
}
