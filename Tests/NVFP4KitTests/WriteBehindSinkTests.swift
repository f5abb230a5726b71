import CNVFP4Kernel
import Crypto
import Dispatch
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

    @Test("a failed write is rethrown to the producer; nothing more is written; abort and deinit after it are safe")
    func failureReachesTheProducer() throws {
        let failing = FailingSink(failAtWrite: 1)
        var thrown: (any Error)?
        do {
            let sink = WriteBehindSink(wrapping: failing, bufferCount: 2, bufferBytes: 16)
            let chunk = [UInt8](repeating: 1, count: 16)
            try chunk.withUnsafeBytes { try sink.write($0) }  // fills buffer 1: its write blocks on the gate
            // A reservation taken before the failure is known and never committed: the sink is
            // dropped holding it, which must not trap (every buffer must be back in the pool).
            let reserved = try sink.reserve(byteCount: 8)
            #expect(reserved.count == 8)
            failing.gate.signal()  // now the first write fails
            do {
                try sink.flush()
            } catch {
                thrown = error
                sink.abort()
            }
        }
        let error = try #require(thrown as? SystemError)
        #expect(error.code == ENOSPC)
        let writes = failing.writes.load(ordering: .relaxed)
        let aborted = failing.aborted.load(ordering: .relaxed)
        #expect(writes == 1, "nothing is written after the first failure")
        #expect(aborted)
    }

    @Test("abort drops what is still queued instead of writing it")
    func abortDropsTheQueue() throws {
        let gated = FailingSink(failAtWrite: .max)
        let sink = WriteBehindSink(wrapping: gated, bufferCount: 4, bufferBytes: 16)
        let chunk = [UInt8](repeating: 2, count: 16)
        for _ in 0..<3 { try chunk.withUnsafeBytes { try sink.write($0) } }  // three full buffers queued
        while gated.writes.load(ordering: .relaxed) == 0 { usleep(1000) }  // the first write is under way (at the gate)
        let release = DispatchQueue(label: "release")
        release.asyncAfter(deadline: .now() + 0.2) { gated.gate.signal() }  // lets the first write finish
        sink.abort()
        let writes = gated.writes.load(ordering: .relaxed)
        let aborted = gated.aborted.load(ordering: .relaxed)
        #expect(writes == 1, "only the write already under way when abort came")
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
                // Eight random bytes at a time (a debug build draws 14 MB one byte at a time slowly).
                let words = (0..<((size + 7) / 8)).map { _ in rng.next() }
                let bytes = Array(words.withUnsafeBytes { $0.prefix(size) })
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

/// A sink whose first write waits for `gate`, and whose n-th write fails with ENOSPC.
private final class FailingSink: OutputSink, @unchecked Sendable {
    let displayPath = "<failing>"
    let failAtWrite: Int
    let writes = Atomic<Int>(0)
    let aborted = Atomic<Bool>(false)
    let gate = DispatchSemaphore(value: 0)

    init(failAtWrite: Int) { self.failAtWrite = failAtWrite }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        let n = writes.add(1, ordering: .relaxed).newValue
        if n == 1 { gate.wait() }
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
            // One-chunk waves, and waves of several chunks (the largest fixture rows are 104 bytes).
            let runs = [(QuantizeOptions().scaleBufferLimit, 1), (0, 1), (0, 256 * 104)]
            for (i, (limit, waveBytes)) in runs.enumerated() {
                var options = QuantizeOptions()
                options.format = format
                options.waveBytes = waveBytes
                options.scaleBufferLimit = limit
                let path = dir.file("\(i).safetensors")
                let sink = try AtomicFileSink(path: path, replace: false)
                let result = try QuantizeJob.run(reader: try SafetensorsReader(path: FixturePaths.torchaoInput("bf16")), sink: sink, options: options)
                try sink.publish()
                #expect(result.tensors.contains { $0.shape[0] > 2 * 128 }, "a tensor spans several waves")
                outputs.append(try ToolRunner.readFile(path))
            }
            #expect(!outputs[0].isEmpty && outputs[0] == outputs[1] && outputs[0] == outputs[2])
        }
    }
}

/// A streamed input (stdin, zstd) whose tensors exceed the reader's memory limit goes through
/// temporary files: same output, same input hash, as a mapped read of the same file.
@Suite struct StreamSpoolTests {
    @Test func spooledTensorsGiveTheSameOutputAndHash() throws {
        let path = ToolRunner.fixture("tiny-llama/model.safetensors")
        try ToolRunner.withTemporaryDirectory { dir in
            var options = QuantizeOptions()
            options.hashes = .all
            var runs: [(bytes: [UInt8], input: String?)] = []
            for limit in [Int?.none, 1 << 30, 4096, 0] {
                let reader: SafetensorsReader
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                #expect(fd >= 0)
                defer { close(fd) }
                if let limit {
                    reader = try SafetensorsReader(stream: FileDescriptorStream(fd: fd, path: path), displayPath: path)
                    reader.streamTensorMemoryLimit = limit
                } else {
                    reader = try SafetensorsReader(path: path, hashing: true)
                }
                let out = dir.file("out\(runs.count).safetensors")
                let sink = try AtomicFileSink(path: out, replace: false)
                let result = try QuantizeJob.run(reader: reader, sink: sink, options: options)
                try sink.publish()
                runs.append((try ToolRunner.readFile(out), result.input.sha256))
            }
            let spooledTensors = try SafetensorsReader(path: path).header.tensors.filter { $0.byteCount > 4096 }
            #expect(!spooledTensors.isEmpty, "some tensors are larger than the 4096-byte limit")
            #expect(!runs[0].bytes.isEmpty && runs[0].input != nil)
            for run in runs.dropFirst() {
                #expect(run.bytes == runs[0].bytes)
                #expect(run.input == runs[0].input)
            }
        }
    }
}
