import CZstd

/// A failure of libzstd, or a zstd stream that ends inside a frame.
public enum ZstdError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A libzstd call returned an error code.
    case library(function: String, code: Int)
    /// The input ended before the last frame did.
    case truncatedFrame
    /// A compression level outside the library's range.
    case invalidLevel(Int)
    /// libzstd could not allocate a context.
    case outOfMemory

    public var description: String {
        switch self {
        case .library(let function, let code):
            let name = String(cString: ZSTD_getErrorName(code))
            if function == "ZSTD_decompressStream" { return "not valid zstd data: \(name)" }
            return "zstd: \(function): \(name)"
        case .truncatedFrame: return "zstd data ends inside a frame (truncated file?)"
        case .invalidLevel(let level):
            return "zstd level \(level) is out of range \(ZSTD_minCLevel())...\(ZSTD_maxCLevel())"
        case .outOfMemory: return "zstd: out of memory"
        }
    }
}

/// Throws ``ZstdError/library(function:code:)`` when `code` is a libzstd error code.
@discardableResult
func zstdCheck(_ code: Int, _ function: String) throws(ZstdError) -> Int {
    if ZSTD_isError(code) != 0 { throw .library(function: function, code: code) }
    return code
}

/// zstd's frame magic number as it appears in a file: `28 B5 2F FD`.
public let zstdMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]

/// The zstd compression levels libzstd accepts (negative levels are the fast modes).
public var zstdLevelRange: ClosedRange<Int> { Int(ZSTD_minCLevel())...Int(ZSTD_maxCLevel()) }

/// The default zstd compression level (3).
public let zstdDefaultLevel = 3
