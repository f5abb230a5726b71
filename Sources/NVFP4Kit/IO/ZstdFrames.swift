import CZstd

/// What the start of a zstd stream says before anything is decompressed.
enum ZstdFrames {
    /// `ZSTD_CONTENTSIZE_UNKNOWN` and `ZSTD_CONTENTSIZE_ERROR` (macros Swift does not import).
    static let contentSizeUnknown = UInt64.max
    static let contentSizeError = UInt64.max - 1

    /// Whether four bytes begin a zstd frame (`28 B5 2F FD`) or a skippable frame
    /// (`5? 2A 4D 18`, magic 0x184D2A50...0x184D2A5F), which the zstd tool accepts first.
    static func startsFrame(_ head: [UInt8]) -> Bool {
        head.count >= 4 && (Array(head.prefix(4)) == zstdMagic || isSkippable(head))
    }

    /// Whether four bytes are a skippable frame's magic number.
    static func isSkippable(_ head: [UInt8]) -> Bool {
        head.count >= 4 && head[0] & 0xF0 == 0x50 && head[1] == 0x2A && head[2] == 0x4D && head[3] == 0x18
    }

    /// Where the first frame that is not skippable starts, as far as `prefix` tells.
    static func firstDataFrame(_ prefix: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        while offset + 8 <= prefix.count, isSkippable(Array(prefix[offset..<(offset + 4)])) {
            let size = prefix.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            offset += 8 + Int(UInt32(littleEndian: size))
        }
        return offset
    }

    /// How many bytes from the start hold the first data frame's header (at most 18 bytes,
    /// `ZSTD_FRAMEHEADERSIZE_MAX`), given what `prefix` already shows.
    static func firstFrameHeaderEnd(_ prefix: UnsafeRawBufferPointer) -> Int {
        firstDataFrame(prefix) + 18
    }

    /// The content size the first data frame in `prefix` declares, after any skippable frames,
    /// or `nil` if its header is not within `prefix` or declares none.
    ///
    /// The corresponding zstd function is `ZSTD_getFrameContentSize`.
    static func declaredContentSize(_ prefix: UnsafeRawBufferPointer) -> UInt64? {
        let offset = firstDataFrame(prefix)
        guard offset < prefix.count else { return nil }
        let size = ZSTD_getFrameContentSize(prefix.baseAddress! + offset, prefix.count - offset)
        guard size != contentSizeUnknown, size != contentSizeError else { return nil }
        return UInt64(size)
    }
}
