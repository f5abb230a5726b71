/// Why a safetensors header was rejected. Each case names what a user needs to find the problem.
public enum SafetensorsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than 8 bytes: there is no header length.
    case headerTooSmall(fileSize: UInt64)
    /// The header length is above the reference limit of 100,000,000 bytes.
    case headerTooLarge(length: UInt64)
    /// The header length points past the end of the file.
    case headerLengthPastEnd(length: UInt64, fileSize: UInt64)
    /// The first bytes are those of another format (JSON, GGUF, a pickle, zstd…), named with a hint.
    case notSafetensors(String)
    /// The header is not valid JSON (or not UTF-8).
    case invalidJSON(JSONSyntaxError)
    /// The top level is not a JSON object.
    case headerNotObject
    /// `__metadata__` is not an object of strings.
    case invalidMetadata(key: String?)
    /// A tensor entry is malformed: missing fields, wrong types.
    case invalidTensorEntry(tensor: String, reason: String)
    /// The dtype string is not one the format defines.
    case unknownDType(tensor: String, dtype: String)
    /// Element count or byte size overflows.
    case sizeOverflow(tensor: String)
    /// A sub-byte dtype does not fill whole bytes.
    case misalignedSlice(tensor: String)
    /// `data_offsets` disagree with shape and dtype.
    case sizeMismatch(tensor: String, expected: UInt64, actual: UInt64)
    /// Offsets leave a gap, overlap, run backwards or do not start at 0.
    case invalidOffset(tensor: String)
    /// The data section is shorter or longer than the tensors cover.
    case incompleteCoverage(dataBytes: UInt64, covered: UInt64)
    /// The stream ended before the data section did.
    case truncated(expected: UInt64, actual: UInt64)

    public var description: String {
        switch self {
        case .headerTooSmall(let size): return "file is \(size) bytes, too small for a safetensors header"
        case .headerTooLarge(let n): return "header length \(n) exceeds the \(SafetensorsHeader.maxHeaderLength)-byte limit"
        case .headerLengthPastEnd(let n, let size):
            return "header length \(n) runs past the end of the \(size)-byte file"
        case .notSafetensors(let kind): return kind
        case .invalidJSON(let e): return "header is not valid JSON: \(e)"
        case .headerNotObject: return "header is not a JSON object"
        case .invalidMetadata(let key):
            if let key { return "__metadata__ value for \"\(key)\" is not a string" }
            return "__metadata__ is not an object of strings"
        case .invalidTensorEntry(let t, let reason): return "tensor \"\(t)\": \(reason)"
        case .unknownDType(let t, let d): return "tensor \"\(t)\": unknown dtype \"\(d)\""
        case .sizeOverflow(let t): return "tensor \"\(t)\": size overflows"
        case .misalignedSlice(let t): return "tensor \"\(t)\": sub-byte dtype does not fill whole bytes"
        case .sizeMismatch(let t, let expected, let actual):
            return "tensor \"\(t)\": shape and dtype need \(expected) bytes but data_offsets span \(actual)"
        case .invalidOffset(let t): return "tensor \"\(t)\": data_offsets leave a gap, overlap or run backwards"
        case .incompleteCoverage(let dataBytes, let covered):
            return "tensors cover \(covered) bytes but the data section holds \(dataBytes)"
        case .truncated(let expected, let actual):
            return "input ended after \(actual) of \(expected) bytes"
        }
    }
}
