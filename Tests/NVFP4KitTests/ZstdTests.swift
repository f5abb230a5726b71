import CZstd
import Glibc
import NVFP4Kit
import Testing

/// An in-memory stream that hands out at most `chunk` bytes per read and counts what was taken.
final class MemoryStream: ByteStream {
    private let bytes: [UInt8]
    private let chunk: Int
    private(set) var position = 0

    init(_ bytes: [UInt8], chunk: Int = .max) {
        self.bytes = bytes
        self.chunk = chunk
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, chunk, bytes.count - position)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) }
        position += n
        return n
    }
}

/// Reads a stream to its end.
func drain(_ stream: any ByteStream, chunk: Int = 1 << 16) throws -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: chunk)
    while true {
        let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
        if n == 0 { return out }
        out += buffer[0..<n]
    }
}

/// Deterministic bytes that compress somewhat (not all zeros, not random).
func compressibleBytes(_ count: Int, seed: UInt32 = 1) -> [UInt8] {
    var state = seed
    return (0..<count).map { i in
        state = state &* 1_664_525 &+ 1_013_904_223
        return i % 3 == 0 ? UInt8(truncatingIfNeeded: state >> 24) : UInt8(truncatingIfNeeded: i / 97)
    }
}

/// Compresses `bytes` with the given worker count (0 = libzstd's single-threaded mode).
private func compressWithWorkers(_ bytes: [UInt8], threads: Int) throws -> [UInt8] {
    let sink = MemorySink()
    let zstd = try ZstdCompressingSink(wrapping: sink, level: 1, threads: threads)
    // Several writes, as the quantizer does.
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + 1_000_003)
        try bytes[offset..<end].withUnsafeBytes { try zstd.write($0) }
        offset = end
    }
    let sealed = try zstd.seal()
    try zstd.publish()
    #expect(sealed.byteCount == UInt64(bytes.count), "seal() reports the uncompressed size")
    return sink.bytes
}

@Suite("zstd codec")
struct ZstdTests {
    @Test("compress then decompress gives the bytes back, whatever the read sizes", arguments: [0, 1, 4096, (1 << 20) + 3])
    func roundTrip(count: Int) throws {
        let original = compressibleBytes(count)
        let compressed = try zstdCompress(original)
        #expect(Array(compressed.prefix(4)) == zstdMagic)
        for chunk in [1, 7, 1 << 20] {
            let decoded = try drain(try ZstdDecompressingStream(source: MemoryStream(compressed, chunk: chunk)), chunk: 1000)
            #expect(decoded == original, "chunk \(chunk)")
        }
    }

    @Test("concatenated frames decode as one stream (as `cat a.zst b.zst`)")
    func concatenatedFrames() throws {
        let a = compressibleBytes(5000, seed: 1), b = compressibleBytes(7000, seed: 2)
        let both = try zstdCompress(a) + zstdCompress(b)
        #expect(try drain(try ZstdDecompressingStream(source: MemoryStream(both, chunk: 333))) == a + b)
    }

    @Test("a frame with a 2 GiB window (zstd --long=31) decodes; libzstd's default limit would refuse it")
    func longWindowFrame() throws {
        let original = compressibleBytes(100_000)
        let compressed = try zstdCompress(original, windowLog: 31, pledgeSize: false)
        #expect(try drain(try ZstdDecompressingStream(source: MemoryStream(compressed))) == original)
        // The same frame through a decoder with the default windowLogMax (27) fails: the test really
        // exercises ZSTD_d_windowLogMax.
        let dctx = try #require(ZSTD_createDCtx())
        defer { ZSTD_freeDCtx(dctx) }
        var output = [UInt8](repeating: 0, count: 200_000)
        let code = output.withUnsafeMutableBytes { out in
            compressed.withUnsafeBytes { src in
                var inBuffer = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
                var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                return ZSTD_decompressStream(dctx, &outBuffer, &inBuffer)
            }
        }
        #expect(ZSTD_isError(code) != 0, "the default decoder should refuse a 2^31 window")
    }

    @Test("multi-threaded compression gives the same bytes for 1, 2 and 4 workers")
    func threadCountDoesNotChangeBytes() throws {
        // Larger than libzstd's minimum job size (512 KiB) several times over, so jobs really run in parallel.
        let original = compressibleBytes(12 << 20)
        let one = try compressWithWorkers(original, threads: 1)
        #expect(try compressWithWorkers(original, threads: 2) == one)
        #expect(try compressWithWorkers(original, threads: 4) == one)
        #expect(try drain(try ZstdDecompressingStream(source: MemoryStream(one))) == original)
    }

    @Test("levels outside libzstd's range are refused", arguments: [zstdLevelRange.upperBound + 1, Int(Int32.min) + 1])
    func invalidLevel(level: Int) throws {
        #expect(throws: ZstdError.invalidLevel(level)) { _ = try ZstdCompressingSink(wrapping: MemorySink(), level: level) }
    }
}

// MARK: - Hostile zstd input

/// What the reader must say about a hostile zstd input.
private func readerError(_ bytes: [UInt8]) -> (any Error)? {
    do {
        let stream = try ZstdDecompressingStream(source: MemoryStream(bytes, chunk: 4096))
        let reader = try SafetensorsReader(stream: stream, displayPath: "<test>")
        for t in reader.header.tensors { _ = try reader.withBytes(of: t) { $0.count } }
        _ = try reader.finish()
        return nil
    } catch {
        return error
    }
}

private func cause(_ error: (any Error)?) -> (any Error)? { (error as? FileError)?.cause ?? error }

@Suite("Hostile zstd inputs")
struct HostileZstdTests {
    static let valid: [UInt8] = {
        let json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"
        var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { Array($0) }
        bytes += Array(json.utf8)
        bytes += (0..<16).map { UInt8($0) }
        return bytes
    }()

    @Test("a valid file compressed is read like the plain file")
    func validFileReads() throws {
        #expect(readerError(try zstdCompress(Self.valid)) == nil)
    }

    @Test("a truncated frame is reported as truncated", arguments: [0.25, 0.5, 0.9])
    func truncatedFrame(fraction: Double) throws {
        let compressed = try zstdCompress(compressibleBytes(300_000) + Self.valid)
        let cut = Array(compressed.prefix(Int(Double(compressed.count) * fraction)))
        let error = cause(readerError(cut))
        // Either the frame ends early, or the safetensors bytes that did arrive are not a file.
        #expect(error as? ZstdError == .truncatedFrame || error is SafetensorsError, "\(String(describing: error))")
        #expect(cause(readerError(try zstdCompress(Self.valid).dropLast(3).map { $0 })) as? ZstdError == .truncatedFrame)
    }

    @Test("garbage after the magic number is not valid zstd data")
    func garbageAfterMagic() throws {
        let bytes = zstdMagic + Array(repeating: 0xEE, count: 64)
        let error = cause(readerError(bytes))
        guard case .library(let function, _)? = error as? ZstdError else {
            Issue.record("expected a libzstd error, got \(String(describing: error))")
            return
        }
        #expect(function == "ZSTD_decompressStream")
        #expect("\(error!)".hasPrefix("not valid zstd data: "))
    }

    @Test("garbage after a complete frame is rejected")
    func garbageAfterFrame() throws {
        let error = cause(readerError(try zstdCompress(Self.valid) + Array("trailing junk".utf8)))
        #expect(error is ZstdError, "\(String(describing: error))")
    }

    @Test("a decompression bomb after a valid file: reading stops one byte past the declared data")
    func bombAfterValidFile() throws {
        // 256 MiB of zeros after a valid file compress to a few KiB.
        let sink = MemorySink()
        let zstd = try ZstdCompressingSink(wrapping: sink, level: 1)
        try zstd.write(Self.valid)
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<256 { try zstd.write(zeros) }
        _ = try zstd.seal()
        try zstd.publish()
        let compressed = sink.bytes
        #expect(compressed.count < 64 << 10)

        let source = MemoryStream(compressed, chunk: 1024)
        let reader = try SafetensorsReader(stream: try ZstdDecompressingStream(source: source), displayPath: "<bomb>")
        #expect(throws: FileError.self) { _ = try reader.finish() }
        do { _ = try reader.finish() } catch let error as FileError {
            #expect(error.cause as? SafetensorsError == .incompleteCoverage(dataBytes: 17, covered: 16), "\(error)")
        }
        #expect(source.position < compressed.count / 2, "the decoder was driven far past the declared data: \(source.position) of \(compressed.count)")
    }

    @Test("a decompression bomb into random-access reading is not spooled past the declared data")
    func bombIsNotSpooled() throws {
        let sink = MemorySink()
        let zstd = try ZstdCompressingSink(wrapping: sink, level: 1)
        try zstd.write(Self.valid)
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<256 { try zstd.write(zeros) }
        _ = try zstd.seal()
        try zstd.publish()
        try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write(sink.bytes, to: "bomb.safetensors.zst")
            #expect(throws: FileError.self) { _ = try SafetensorsReader.randomAccess(path: path) }
            do { _ = try SafetensorsReader.randomAccess(path: path) } catch let error as FileError {
                #expect(error.cause as? SafetensorsError == .incompleteCoverage(dataBytes: 17, covered: 16), "\(error)")
            }
        }
    }

    @Test("a header that declares a huge tensor in front of a short zstd stream fails without allocating it")
    func hugeDeclaredTensor() throws {
        let size = UInt64(1) << 40  // 1 TiB
        let json = "{\"x\":{\"dtype\":\"U8\",\"shape\":[\(size)],\"data_offsets\":[0,\(size)]}}"
        var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { Array($0) }
        bytes += Array(json.utf8) + [UInt8](repeating: 7, count: 1000)
        let error = cause(readerError(try zstdCompress(bytes)))
        #expect(error as? SafetensorsError == .truncated(expected: 8 + UInt64(json.utf8.count) + size, actual: 8 + UInt64(json.utf8.count) + 1000),
                "\(String(describing: error))")
    }

    @Test("an empty .zst file is an empty input")
    func emptyZst() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write([], to: "empty.safetensors.zst")
            #expect(throws: FileError.self) { _ = try SafetensorsReader(path: path) }
            do { _ = try SafetensorsReader(path: path) } catch let error as FileError {
                #expect(error.cause as? SafetensorsError == .headerTooSmall(fileSize: 0))
            }
        }
    }
}
