import CNVFP4Kernel
import Crypto
import Glibc
import NVFP4Kit
import Synchronization
import Testing

/// The write-behind sink delivers exactly the bytes written, in order, with their SHA-256, for any
/// mix of copied, reserved and retained writes; a failed write reaches the producer and nothing
/// crashes or leaks on the failure paths.
@Suite struct WriteBehindSinkTests {
    /// One step of a producer.
    enum Step {
        case copy(Int)
        case reserve(Int)
        case retain(Int)
    }

    /// Small buffers (64 bytes, two of them) so that steps wrap, grow a buffer and wait for the stages.
    static let steps: [Step] = [
        .copy(0), .copy(1), .copy(63), .reserve(10), .copy(64), .retain(5), .reserve(64), .copy(65),
        .reserve(100), .retain(0), .copy(200), .reserve(3), .retain(1000), .reserve(1), .copy(7),
    ]

    @Test("bytes and SHA-256 equal a one-shot hash of the stream", arguments: [true, false])
    func bytesAndDigest(hashing: Bool) throws {
        var rng = SystemRandomNumberGenerator()
        func randomBytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        let memory = MemorySink()
        let sink = WriteBehindSink(wrapping: memory, bufferCount: 2, bufferBytes: 64, hashing: hashing)
        var expected: [UInt8] = []
        var retained: [UnsafeMutableRawBufferPointer] = []
        defer { for r in retained { r.deallocate() } }
        let completions = Completions()
        for step in Self.steps {
            switch step {
            case .copy(let n):
                var bytes = randomBytes(n)
                expected += bytes
                try bytes.withUnsafeBytes { try sink.write($0) }
                for i in bytes.indices { bytes[i] = 0xEE }  // a copied write may be reused at once
            case .reserve(let n):
                let bytes = randomBytes(n)
                expected += bytes
                let target = try sink.reserve(byteCount: n)
                #expect(target.count == n)
                target.copyBytes(from: bytes)
                sink.commit(byteCount: n)
            case .retain(let n):
                let bytes = randomBytes(n)
                expected += bytes
                let kept = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n, 1), alignment: 1)
                kept.copyBytes(from: bytes)
                retained.append(kept)
                try sink.write(retaining: UnsafeRawBufferPointer(rebasing: kept[0..<n])) { completions.count.add(1, ordering: .relaxed) }
            }
        }
        let sealed = try sink.seal()
        #expect(memory.bytes == expected)
        #expect(sealed.byteCount == UInt64(expected.count))
        let oneShot = SHA256.hash(data: expected).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        // Without hashing, the sink reports the inner sink's digest (MemorySink hashes what it got).
        #expect(sealed.sha256 == oneShot)
        let retainCount = Self.steps.filter { if case .retain = $0 { true } else { false } }.count
        let completed = completions.count.load(ordering: .relaxed)
        #expect(completed == retainCount, "every retained write's completion runs once")
    }

    @Test("a failed write is rethrown to the producer; abort and deinit after it are safe")
    func failureReachesTheProducer() throws {
        let failing = FailingSink(failAtWrite: 2)
        var thrown: (any Error)?
        do {
            let sink = WriteBehindSink(wrapping: failing, bufferCount: 2, bufferBytes: 16)
            let chunk = [UInt8](repeating: 1, count: 16)
            do {
                for _ in 0..<100 {
                    try chunk.withUnsafeBytes { try sink.write($0) }
                    // A reservation left uncommitted when the error arrives must not trap in deinit.
                    _ = try sink.reserve(byteCount: 8)
                    sink.commit(byteCount: 8)
                }
                try sink.flush()
            } catch {
                thrown = error
                _ = try? sink.reserve(byteCount: 4)
                sink.abort()
            }
        }
        let error = try #require(thrown as? SystemError)
        #expect(error.code == ENOSPC)
        let writes = failing.writes.load(ordering: .relaxed)
        let aborted = failing.aborted.load(ordering: .relaxed)
        #expect(writes == 2, "nothing is written after the first failure")
        #expect(aborted)
    }

    @Test("direct and buffered files hold the same bytes; direct I/O is used where the file system allows it",
          arguments: OutputIO.allCases)
    func directAndBufferedFiles(io: OutputIO) throws {
        var rng = SystemRandomNumberGenerator()
        // Sizes that leave the stream unaligned, cross the 8 MiB staging buffer and end mid-block.
        let sizes = [21, 5 << 20, 3, 9 << 20, 4096, 1]
        try ToolRunner.withTemporaryDirectory { dir in
            let path = dir.file("out.bin")
            let sink = try AtomicFileSink(path: path, replace: false, hashing: true, io: io)
            var expected: [UInt8] = []
            for size in sizes {
                let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
                expected += bytes
                try bytes.withUnsafeBytes { try sink.write($0) }
            }
            let sealed = try sink.seal()
            try sink.publish()
            #expect(try ToolRunner.readFile(path) == expected)
            #expect(sealed.sha256 == SHA256.hash(data: expected).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())
            if io == .direct, Self.fileSystemSupportsDirectIO(dir.path) {
                // Every whole 4 KiB block goes around the cache; only the last partial block does not.
                #expect(sink.directByteCount == UInt64(expected.count / 4096 * 4096))
            }
            if io == .buffered { #expect(sink.directByteCount == 0) }
        }
    }

    /// Whether the file system under `directory` takes an aligned `O_DIRECT` write (ext4, XFS and
    /// btrfs do; some others refuse it, and the sink then writes normally).
    static func fileSystemSupportsDirectIO(_ directory: String) -> Bool {
        let path = directory + "/.direct-probe"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd); unlink(path) }
        guard nvfp4_set_direct_io(fd, 1) == 0 else { return false }
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { block.deallocate() }
        block.initializeMemory(as: UInt8.self, repeating: 0)
        return Glibc.write(fd, block.baseAddress!, 4096) == 4096
    }
}

/// Counts completions from the stage threads.
private final class Completions: Sendable {
    let count = Atomic<Int>(0)
}

/// A sink whose n-th write fails with ENOSPC.
private final class FailingSink: OutputSink, @unchecked Sendable {
    let displayPath = "<failing>"
    let failAtWrite: Int
    let writes = Atomic<Int>(0)
    let aborted = Atomic<Bool>(false)

    init(failAtWrite: Int) { self.failAtWrite = failAtWrite }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        let n = writes.add(1, ordering: .relaxed).newValue
        if n >= failAtWrite { throw SystemError(call: "write", path: displayPath, code: ENOSPC) }
    }
    func seal() throws -> (sha256: String?, byteCount: UInt64) { (nil, 0) }
    func publish() throws {}
    func abort() { aborted.store(true, ordering: .relaxed) }
}

/// The row-major layouts (compressed-tensors, ModelOpt) give the same bytes when no tensor's block
/// scales may be kept in memory (every tensor's scales computed again, wave by wave).
@Suite struct BoundedScaleBufferTests {
    @Test(arguments: [CheckpointFormat.compressedTensors, .modelopt])
    func rowMajorScalesRecomputed(format: CheckpointFormat) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            var outputs: [[UInt8]] = []
            for (i, limit) in [QuantizeOptions().scaleBufferLimit, 0].enumerated() {
                var options = QuantizeOptions()
                options.format = format
                options.waveBytes = 1  // one 128-row chunk per wave: several waves per tensor
                options.scaleBufferLimit = limit
                let path = dir.file("\(i).safetensors")
                let sink = try AtomicFileSink(path: path, replace: false)
                let result = try QuantizeJob.run(reader: try SafetensorsReader(path: FixturePaths.torchaoInput("bf16")), sink: sink, options: options)
                try sink.publish()
                #expect(result.tensors.contains { $0.shape[0] > 2 * 128 }, "a tensor spans several waves")
                outputs.append(try ToolRunner.readFile(path))
            }
            #expect(!outputs[0].isEmpty && outputs[0] == outputs[1])
        }
    }
}
