import Glibc
import NVFP4Kit

/// libFuzzer entry point: every input is a hostile file for the header parser, the mapped reader,
/// the stream reader (with short reads) and, when it starts with zstd's magic number, the zstd
/// stream decoder in front of the reader; with `NVFP4_FUZZ_TARGET` set, one of the JSON files
/// (``JSONFuzzTarget``) instead. Any crash, trap or hang is a bug; thrown errors are the
/// expected outcome for bad input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzChecks.one(data, size)
}

extension FuzzChecks {
    /// Runs every check on one input.
    static func one(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
        if let target = JSONFuzzTarget.selected {
            target.run(bytes)
        } else if bytes.starts(with: zstdMagic) {
            zstdStream(bytes)
        } else {
            headerParser(bytes)
            mappedReader(bytes)
            streamReader(bytes, chunk: 1 + Int(bytes.last ?? 0) % 7)
        }
        return 0
    }
}

enum FuzzChecks {
    /// Length prefix, JSON header and coverage rules on their own.
    static func headerParser(_ bytes: [UInt8]) {
        guard bytes.count >= 8 else { return }
        let length = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        do {
            try SafetensorsHeader.validateLength(length, fileSize: UInt64(bytes.count))
            let header = try SafetensorsHeader(json: bytes[8..<(8 + Int(length))])
            try header.validateCoverage(dataSectionBytes: UInt64(bytes.count) - 8 - length)
        } catch {}
    }

    /// The whole mapped-file path: header, every tensor's bytes, NVFP4 grouping, dequantization.
    static func mappedReader(_ bytes: [UInt8]) {
        let fd = scratchFile
        guard ftruncate(fd, 0) == 0 else { fatalError("ftruncate failed") }
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        precondition(written == bytes.count)
        do {
            let file = try MappedFile(fd: fd, path: "<fuzz>")
            let reader = try SafetensorsReader(mappedFile: file, hashing: false)
            try readEverything(reader)
        } catch {}
    }

    /// One unlinked file in /dev/shm (or /tmp), rewritten for every input.
    nonisolated(unsafe) static let scratchFile: Int32 = {
        let folder = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        var template = Array("\(folder)/nvfp4-fuzz.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { fatalError("mkstemp failed in \(folder)") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return fd
    }()

    /// The stream path, fed in small pieces to exercise partial reads.
    static func streamReader(_ bytes: [UInt8], chunk: Int) {
        do {
            let reader = try SafetensorsReader(stream: ChunkedMemoryStream(bytes, chunk: chunk), displayPath: "<fuzz>")
            try readEverything(reader)
        } catch {}
    }

    /// zstd frames decoded in front of the stream reader (decoding capped at 64 MiB per input).
    static func zstdStream(_ bytes: [UInt8]) {
        do {
            let stream = try ZstdDecompressingStream(source: ChunkedMemoryStream(bytes, chunk: 1 + bytes.count / 3))
            let reader = try SafetensorsReader(stream: LimitedStream(stream, limit: 64 << 20), displayPath: "<fuzz>")
            try readEverything(reader)
        } catch {}
    }

    /// The read commands' walk (``ExhaustiveRead``), shared with FuzzRegressionTests.
    static func readEverything(_ reader: SafetensorsReader) throws {
        blackHole(try ExhaustiveRead.run(reader))
    }

    @inline(never)
    static func blackHole(_ value: UInt8) { if value == 0xA5 && getenv("NVFP4_FUZZ_NEVER") != nil { print(value) } }
}

/// Yields an array at most `chunk` bytes per read.
final class ChunkedMemoryStream: ByteStream {
    private let bytes: [UInt8]
    private let chunk: Int
    private var offset = 0

    init(_ bytes: [UInt8], chunk: Int) {
        self.bytes = bytes
        self.chunk = chunk
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, chunk, bytes.count - offset)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
        offset += n
        return n
    }
}
