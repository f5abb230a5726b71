import CZstd
import Crypto

/// Compresses everything written into one zstd frame and passes it to another ``OutputSink``.
///
/// ``seal()`` reports the SHA-256 and size of the *uncompressed* bytes, so a manifest describes
/// the safetensors content whatever the container. With libzstd's worker threads available the
/// frame is always compressed in multi-threaded mode (at least one worker), whose output does not
/// depend on the number of workers: the bytes are the same for every `--threads`.
public final class ZstdCompressingSink: OutputSink {
    public var displayPath: String { inner.displayPath }
    private let inner: any OutputSink
    private let context: OpaquePointer
    private let output: UnsafeMutableRawBufferPointer
    private var hasher: SHA256?
    private var written: UInt64 = 0
    private var finished = false

    /// Starts a frame.
    ///
    /// - Parameters:
    ///   - inner: Where the compressed bytes go (a file or stdout); this sink owns it from now on.
    ///   - level: The compression level (``zstdLevelRange``).
    ///   - threads: Worker threads for libzstd (at least one is always used when supported).
    ///   - hashing: Whether ``seal()`` reports the SHA-256 of the uncompressed bytes.
    /// - Throws: ``ZstdError`` for an invalid level.
    ///
    /// The corresponding zstd functions are `ZSTD_createCCtx` and `ZSTD_CCtx_setParameter`.
    public init(wrapping inner: any OutputSink, level: Int = zstdDefaultLevel, threads: Int = 1, hashing: Bool = true) throws(ZstdError) {
        guard zstdLevelRange.contains(level) else { throw .invalidLevel(level) }
        guard let context = ZSTD_createCCtx() else { throw .outOfMemory }
        self.context = context
        self.inner = inner
        hasher = hashing ? SHA256() : nil
        output = .allocate(byteCount: ZSTD_CStreamOutSize(), alignment: 64)
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
        // An error here means libzstd was built without threads: stay single-threaded.
        _ = ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, Int32(max(1, min(threads, 64))))
    }

    deinit {
        if !finished { inner.abort() }
        ZSTD_freeCCtx(context)
        output.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        hasher?.update(bufferPointer: bytes)
        written += UInt64(bytes.count)
        // Fed in pieces of libzstd's recommended input size, as the zstd command does: handing
        // the multi-threaded compressor megabytes at once makes its output depend on the worker count.
        let piece = ZSTD_CStreamInSize()
        var offset = 0
        while offset < bytes.count {
            let count = min(piece, bytes.count - offset)
            var inBuffer = ZSTD_inBuffer(src: bytes.baseAddress! + offset, size: count, pos: 0)
            while inBuffer.pos < inBuffer.size {
                try drive(&inBuffer, ZSTD_e_continue)
            }
            offset += count
        }
    }

    /// Ends the frame, then seals the inner sink.
    public func seal() throws -> (sha256: String?, byteCount: UInt64) {
        var empty = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while try drive(&empty, ZSTD_e_end) != 0 {}
        _ = try inner.seal()
        return (hasher?.finalize().hexString, written)
    }

    public func publish() throws {
        finished = true
        try inner.publish()
    }

    public func abort() {
        finished = true
        inner.abort()
    }

    /// One `ZSTD_compressStream2` call; writes what it produced. Returns libzstd's "bytes left to flush".
    @discardableResult
    private func drive(_ inBuffer: inout ZSTD_inBuffer, _ mode: ZSTD_EndDirective) throws -> Int {
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let remaining = try zstdCheck(ZSTD_compressStream2(context, &outBuffer, &inBuffer, mode), "ZSTD_compressStream2")
        if outBuffer.pos > 0 { try inner.write(UnsafeRawBufferPointer(rebasing: output[0..<outBuffer.pos])) }
        return remaining
    }
}

/// Compresses `bytes` into one zstd frame in memory (tests, small files).
///
/// - Parameters:
///   - windowLog: A window of 2^`windowLog` bytes to record in the frame header (`--long=31`
///     frames use 31); `nil` for the level's default.
///   - pledgeSize: Whether the frame header records the content size.
public func zstdCompress(_ bytes: [UInt8], level: Int = zstdDefaultLevel, windowLog: Int? = nil, pledgeSize: Bool = true) throws -> [UInt8] {
    let collector = MemorySink()
    let sink = try ZstdCompressingSink(wrapping: collector, level: level, threads: 1)
    if let windowLog { try sink.setWindowLog(windowLog) }
    if pledgeSize { try sink.pledge(UInt64(bytes.count)) }
    try sink.write(bytes)
    _ = try sink.seal()
    try sink.publish()
    return collector.bytes
}

extension ZstdCompressingSink {
    /// Sets the window size and turns on long-distance matching, as `zstd --long=windowLog`.
    func setWindowLog(_ windowLog: Int) throws(ZstdError) {
        try zstdCheck(ZSTD_CCtx_setParameter(context, ZSTD_c_windowLog, Int32(windowLog)), "ZSTD_CCtx_setParameter")
        try zstdCheck(ZSTD_CCtx_setParameter(context, ZSTD_c_enableLongDistanceMatching, 1), "ZSTD_CCtx_setParameter")
    }

    /// Records the content size in the frame header.
    func pledge(_ size: UInt64) throws(ZstdError) {
        try zstdCheck(ZSTD_CCtx_setPledgedSrcSize(context, size), "ZSTD_CCtx_setPledgedSrcSize")
    }
}

/// Collects written bytes in memory.
public final class MemorySink: OutputSink {
    public let displayPath = "<memory>"
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public func write(_ bytes: UnsafeRawBufferPointer) throws { self.bytes.append(contentsOf: bytes) }
    public func seal() throws -> (sha256: String?, byteCount: UInt64) {
        (SHA256.hash(data: bytes).hexString, UInt64(bytes.count))
    }
    public func publish() throws {}
    public func abort() {}
}
