import Crypto
import Dispatch
import Glibc

/// An error tied to one input or output file: the path and what is wrong with it.
public struct FileError: Error, Sendable, CustomStringConvertible {
    /// The file as the user named it (`<stdin>` for `-`).
    public var path: String
    /// The problem.
    public var cause: any Error & Sendable & CustomStringConvertible

    public init(path: String, cause: any Error & Sendable & CustomStringConvertible) {
        self.path = path
        self.cause = cause
    }

    public var description: String {
        if let system = cause as? SystemError, system.path != nil { return system.description }
        return "\(path): \(cause)"
    }
}

/// Reads a safetensors file header first, then tensor by tensor in file order.
///
/// A regular file is memory-mapped; stdin or any other ``ByteStream`` is read front to back, one
/// tensor at a time: a tensor up to ``streamTensorMemoryLimit`` is held in memory, a larger one is
/// copied to an unlinked temporary file and mapped, so memory stays bounded whatever the model.
/// The whole input is hashed (SHA-256) as it is read, for the manifest.
public final class SafetensorsReader {
    /// The path as given by the user; `<stdin>` for `-`.
    public let displayPath: String
    /// The validated header.
    public let header: SafetensorsHeader
    /// Bytes before the data section: the 8-byte length plus the JSON header.
    public let dataStart: Int
    /// The mapped file when the input is a regular file.
    public let mappedFile: MappedFile?

    private let stream: (any ByteStream)?
    private var hasher: SHA256?  // streams: updated as bytes arrive
    private var fileDigest: BackgroundDigest?  // mapped files: hashed on another thread
    private var streamPosition = 0  // data-section offset of the next stream byte
    private var streamBuffer: UnsafeMutableRawBufferPointer?
    /// Streams: the largest tensor held in memory; larger ones go through a temporary file
    /// (in `TMPDIR`, unlinked at once). The bytes given to ``withBytes(of:_:)`` are the same.
    public var streamTensorMemoryLimit = 64 << 20

    /// Opens a file, or stdin when `path` is `-`; zstd input (`*.zst`, or zstd's magic number at
    /// the start) is decompressed as a stream.
    ///
    /// - Throws: ``FileError`` naming the path for unreadable files and invalid headers.
    ///
    /// - Parameter hashing: Whether ``finish()`` reports the file's SHA-256 (a mapped file is then
    ///   hashed on a background thread).
    public convenience init(path: String, hashing: Bool = true) throws(FileError) {
        switch try InputSource.open(path) {
        case .mapped(let file): try self.init(mappedFile: file, hashing: hashing)
        case .stream(let stream, let displayPath): try self.init(stream: stream, displayPath: displayPath, hashing: hashing)
        }
    }

    /// Opens a file, or stdin when `path` is `-`, for commands that read tensors in any order:
    /// stdin and zstd input are first copied to an anonymous temporary file.
    ///
    /// The copy stops one byte after the data section the header declares, so a hostile stream
    /// (a decompression bomb) cannot fill the disk: the extra byte fails the coverage check.
    ///
    /// - Parameter hashing: Whether ``finish()`` reports the SHA-256 of the (decompressed) input.
    public static func randomAccess(path: String, hashing: Bool = false) throws -> SafetensorsReader {
        switch try InputSource.open(path) {
        case .mapped(let file):
            return try SafetensorsReader(mappedFile: file, hashing: hashing)
        case .stream(let stream, let displayPath):
            let recorder = RecordingStream(stream)
            let probe = try SafetensorsReader(stream: recorder, displayPath: displayPath, hashing: false)
            recorder.stopRecording()
            let total = probe.dataStart + Int(probe.header.dataByteCount)
            let rest = LimitedStream(ReplayStream(prefix: recorder.recorded, rest: stream), limit: total + 1)
            let file: MappedFile
            do { file = try MappedFile.spooling(rest, displayPath: displayPath) } catch let e as any Error & Sendable & CustomStringConvertible {
                throw FileError(path: displayPath, cause: e)
            }
            return try SafetensorsReader(mappedFile: file, hashing: hashing)
        }
    }

    /// Reads the header of a mapped file.
    ///
    /// - Parameter hashing: Whether to compute the file's SHA-256 (on a background thread) for ``finish()``.
    public init(mappedFile file: MappedFile, hashing: Bool = true) throws(FileError) {
        displayPath = file.path
        mappedFile = file
        stream = nil
        let bytes = file.bytes
        let fileSize = UInt64(bytes.count)
        do {
            guard fileSize >= 8 else { throw SafetensorsError.headerTooSmall(fileSize: fileSize) }
            let length = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
            try SafetensorsHeader.validateLength(length, fileSize: fileSize)
            let json = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + Int(length))])
            let header = try SafetensorsHeader(json: json)
            try header.validateCoverage(dataSectionBytes: fileSize - 8 - length)
            self.header = header
            dataStart = 8 + Int(length)
        } catch let error as SafetensorsError {
            throw FileError(path: file.path, cause: error)
        } catch {
            throw FileError(path: file.path, cause: SystemError(call: "read", path: nil, code: EIO))
        }
        if hashing { fileDigest = BackgroundDigest(file: file, byteCount: dataStart + Int(header.dataByteCount)) }
    }

    /// Reads the header from a stream.
    ///
    /// - Parameter hashing: Whether ``finish()`` reports the SHA-256 of everything read.
    public init(stream: any ByteStream, displayPath: String, hashing: Bool = true) throws(FileError) {
        self.displayPath = displayPath
        self.stream = stream
        mappedFile = nil
        hasher = hashing ? SHA256() : nil
        do {
            var prefix = [UInt8](repeating: 0, count: 8)
            let got = try prefix.withUnsafeMutableBytes { try stream.readFully(into: $0) }
            guard got == 8 else { throw SafetensorsError.headerTooSmall(fileSize: UInt64(got)) }
            let length = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            try SafetensorsHeader.validateLength(length, fileSize: nil)
            var json = [UInt8](repeating: 0, count: Int(length))
            let jsonGot = try json.withUnsafeMutableBytes { try stream.readFully(into: $0) }
            guard jsonGot == Int(length) else {
                throw SafetensorsError.headerLengthPastEnd(length: length, fileSize: UInt64(8 + jsonGot))
            }
            header = try SafetensorsHeader(json: json)
            dataStart = 8 + Int(length)
            hasher?.update(data: prefix)
            hasher?.update(data: json)
        } catch let error as FileError {
            throw error
        } catch let error as SafetensorsError {
            throw FileError(path: displayPath, cause: error)
        } catch let error as SystemError {
            throw FileError(path: displayPath, cause: error)
        } catch let error as any Error & Sendable & CustomStringConvertible {
            throw FileError(path: displayPath, cause: error)  // ZstdError
        } catch {
            throw FileError(path: displayPath, cause: SystemError(call: "read", path: displayPath, code: EIO))
        }
    }

    deinit { streamBuffer?.deallocate() }

    /// Whether tensors can be read in any order (a mapped file) or only front to back (a stream).
    public var isRandomAccess: Bool { mappedFile != nil }

    /// Gives `body` the bytes of `tensor`.
    ///
    /// For a stream, tensors must be requested in file order; skipped tensors are read and hashed.
    /// The bytes are valid only inside `body`.
    public func withBytes<R>(of tensor: TensorInfo, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let range = Int(tensor.dataOffsets.lowerBound)..<Int(tensor.dataOffsets.upperBound)
        if let file = mappedFile {
            let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[(dataStart + range.lowerBound)..<(dataStart + range.upperBound)])
            return try body(bytes)
        }
        guard range.lowerBound >= streamPosition else {
            throw FileError(path: displayPath, cause: StreamOrderError(tensor: tensor.name))
        }
        try skipStream(to: range.lowerBound)
        if range.count > streamTensorMemoryLimit {
            let spooled = try spoolStream(count: range.count)
            return try body(spooled.bytes)
        }
        // The buffer grows with the bytes that actually arrive, so a header that declares a huge
        // tensor in front of a short stream cannot make us allocate its declared size.
        var filled = 0
        while filled < range.count {
            let step = min(range.count - filled, max(64 << 20, filled))
            let buffer = try streamBuffer(capacity: filled + step, keeping: filled)
            try readStream(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]), count: step)
            filled += step
        }
        let buffer = try streamBuffer(capacity: range.count, keeping: filled)
        return try body(UnsafeRawBufferPointer(rebasing: buffer[0..<range.count]))
    }

    /// Releases the mapped pages of `tensor` once it has been processed.
    public func release(_ tensor: TensorInfo) {
        mappedFile?.release(mappedRange(of: tensor))
    }

    /// Where `tensor`'s bytes lie in the mapped file (``mappedFile``).
    public func mappedRange(of tensor: TensorInfo) -> Range<Int> {
        (dataStart + Int(tensor.dataOffsets.lowerBound))..<(dataStart + Int(tensor.dataOffsets.upperBound))
    }

    /// Reads the rest of the input, checks nothing follows the last tensor, and returns the
    /// SHA-256 of the whole input (`nil` when made without hashing) and its size in bytes.
    public func finish() throws -> (sha256: String?, byteCount: UInt64) {
        let end = Int(header.dataByteCount)
        if let file = mappedFile {
            let digest = fileDigest?.wait()
            if file.changedSinceMapped() { throw FileError(path: displayPath, cause: InputChangedError()) }
            return (digest, UInt64(dataStart + end))
        } else {
            try skipStream(to: end)
            var probe: UInt8 = 0
            let extra: Int
            do { extra = try withUnsafeMutableBytes(of: &probe) { try stream!.read(into: $0) } } catch let e as any Error & Sendable & CustomStringConvertible {
                throw FileError(path: displayPath, cause: e)
            }
            if extra != 0 {
                throw FileError(path: displayPath, cause: SafetensorsError.incompleteCoverage(dataBytes: UInt64(end + 1), covered: UInt64(end)))
            }
        }
        return (hasher?.finalize().hexString, UInt64(dataStart + end))
    }

    /// A buffer of at least `capacity` bytes whose first `keeping` bytes are preserved.
    private func streamBuffer(capacity: Int, keeping: Int = 0) throws -> UnsafeMutableRawBufferPointer {
        if let existing = streamBuffer, existing.count >= capacity { return existing }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(capacity, 1), alignment: 64)
        if let existing = streamBuffer {
            if keeping > 0 { buffer.baseAddress!.copyMemory(from: existing.baseAddress!, byteCount: keeping) }
            existing.deallocate()
        }
        streamBuffer = buffer
        return buffer
    }

    private func readStream(into buffer: UnsafeMutableRawBufferPointer, count: Int) throws {
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
        let got: Int
        do { got = try stream!.readFully(into: target) } catch let e as any Error & Sendable & CustomStringConvertible {
            throw FileError(path: displayPath, cause: e)
        }
        hasher?.update(bufferPointer: UnsafeRawBufferPointer(rebasing: target[0..<got]))
        streamPosition += got
        guard got == count else {
            throw FileError(path: displayPath, cause: SafetensorsError.truncated(
                expected: UInt64(dataStart) + header.dataByteCount, actual: UInt64(dataStart + streamPosition)))
        }
    }

    /// Copies the next `count` bytes of the stream (hashed and counted as any read) to an unlinked
    /// temporary file and maps it. Disk use grows with the bytes that actually arrive.
    private func spoolStream(count: Int) throws -> MappedFile {
        do {
            return try MappedFile.spooling(StreamSlice(reader: self, count: count), displayPath: displayPath)
        } catch let e as FileError {
            throw e
        } catch let e as any Error & Sendable & CustomStringConvertible {
            throw FileError(path: displayPath, cause: e)
        }
    }

    /// The next `count` bytes of a reader's stream, read through ``readStream(into:count:)``.
    private final class StreamSlice: ByteStream {
        let reader: SafetensorsReader
        var remaining: Int
        init(reader: SafetensorsReader, count: Int) {
            self.reader = reader
            remaining = count
        }
        func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            let n = min(buffer.count, remaining)
            guard n > 0 else { return 0 }
            try reader.readStream(into: buffer, count: n)
            remaining -= n
            return n
        }
    }

    private func skipStream(to offset: Int) throws {
        let chunk = 1 << 20
        while streamPosition < offset {
            let n = min(chunk, offset - streamPosition)
            try readStream(into: try streamBuffer(capacity: n), count: n)
        }
    }
}

/// A memory-mapped input changed (size, contents or timestamps) while it was being read.
public struct InputChangedError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "the file changed while it was being read; nothing was written" }
}

/// A stream was asked for a tensor that lies behind the read position.
public struct StreamOrderError: Error, Sendable, CustomStringConvertible {
    public var tensor: String
    public var description: String {
        "tensor \"\(tensor)\" was requested out of file order; this input must be a seekable file"
    }
}

extension Digest {
    /// Lowercase hexadecimal text.
    var hexString: String {
        var text = ""
        for byte in self {
            let hex = String(byte, radix: 16)
            text += byte < 16 ? "0" + hex : hex
        }
        return text
    }
}

/// SHA-256 of a mapped file computed on a background thread, so hashing overlaps the codec.
///
/// Hashed pages are released behind the hasher; the main reader faults them in again from the page
/// cache if it has not reached them yet.
final class BackgroundDigest: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var digest = ""

    init(file: MappedFile, byteCount: Int) {
        DispatchQueue.global().async { [self] in
            var hasher = SHA256()
            let step = 16 << 20
            var offset = 0
            while offset < byteCount {
                let end = min(byteCount, offset + step)
                hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: file.bytes[offset..<end]))
                file.release(offset..<end)
                offset = end
            }
            digest = hasher.finalize().hexString
            done.signal()
        }
    }

    /// Blocks until the digest is ready; returns it as lowercase hex.
    func wait() -> String {
        done.wait()
        done.signal()
        return digest
    }
}
