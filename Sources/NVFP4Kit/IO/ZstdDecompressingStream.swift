import CZstd

/// Decompresses a zstd stream (one or more frames) read from another ``ByteStream``.
///
/// Frames with windows up to 2 GiB (`zstd --long=31`) are accepted (`ZSTD_d_windowLogMax` 31).
/// Output is produced on demand, so a consumer that stops reading (the safetensors reader stops
/// one byte after the data the header declares) bounds the work a decompression bomb can cause.
public final class ZstdDecompressingStream: ByteStream {
    private let source: any ByteStream
    private let context: OpaquePointer
    private let input: UnsafeMutableRawBufferPointer
    private var inputStart = 0
    private var inputEnd = 0
    private var sourceEnded = false
    /// The last call filled the whole output buffer, so libzstd may hold more decoded bytes.
    private var outputPending = false
    /// A frame has started and not yet ended.
    private var insideFrame = false
    /// The content size the first frame's header declares, once the first input is read.
    private var declaredContentSize: UInt64?
    private var producedByteCount: UInt64 = 0
    private var started = false

    /// Wraps `source`, which must yield zstd frames.
    ///
    /// The corresponding zstd functions are `ZSTD_createDCtx` and `ZSTD_DCtx_setParameter`.
    public init(source: any ByteStream) throws(ZstdError) {
        guard let context = ZSTD_createDCtx() else { throw .outOfMemory }
        self.context = context
        self.source = source
        input = .allocate(byteCount: ZSTD_DStreamInSize(), alignment: 64)
        do {
            try zstdCheck(ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, 31), "ZSTD_DCtx_setParameter")
        } catch {
            ZSTD_freeDCtx(context)
            input.deallocate()
            throw error
        }
    }

    deinit {
        ZSTD_freeDCtx(context)
        input.deallocate()
    }

    /// Decodes into `buffer`.
    ///
    /// - Throws: ``ZstdError`` for corrupt data or a stream that ends inside a frame; whatever the
    ///   source throws.
    ///
    /// The corresponding zstd function is `ZSTD_decompressStream`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        try start()
        while true {
            if inputStart == inputEnd && !sourceEnded && !outputPending {
                let n = try source.read(into: input)
                if n == 0 { sourceEnded = true } else { (inputStart, inputEnd) = (0, n) }
            }
            var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: inputEnd, pos: inputStart)
            var outBuffer = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
            let hint = try zstdCheck(ZSTD_decompressStream(context, &outBuffer, &inBuffer), "ZSTD_decompressStream")
            if inBuffer.pos > inputStart || outBuffer.pos > 0 { insideFrame = hint != 0 }
            inputStart = inBuffer.pos
            outputPending = outBuffer.pos == outBuffer.size
            if outBuffer.pos > 0 {
                producedByteCount += UInt64(outBuffer.pos)
                return outBuffer.pos
            }
            if inputStart == inputEnd && sourceEnded {
                if insideFrame { throw ZstdError.truncatedFrame }
                return 0
            }
        }
    }

    /// Reads just enough to hold the first frame header (after any skippable frames that fit in
    /// the input buffer) and notes its declared content size.
    private func start() throws {
        guard !started else { return }
        started = true
        var filled = 0
        while true {
            let needed = min(input.count, ZstdFrames.firstFrameHeaderEnd(UnsafeRawBufferPointer(rebasing: input[0..<filled])))
            guard filled < needed else { break }
            let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: input[filled..<needed]))
            if n == 0 {
                sourceEnded = true
                break
            }
            filled += n
        }
        (inputStart, inputEnd) = (0, filled)
        declaredContentSize = ZstdFrames.declaredContentSize(UnsafeRawBufferPointer(rebasing: input[0..<filled]))
    }

    /// The first frame's declared content size less what was decoded (a lower bound: later
    /// frames may add more); `nil` if the header declares none.
    public var declaredRemainingBytes: UInt64? {
        guard started else { return nil }
        return declaredContentSize.map { $0 > producedByteCount ? $0 - producedByteCount : 0 }
    }
}
