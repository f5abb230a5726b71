import Crypto
import Dispatch
import Synchronization

/// Writes behind the producer: output is gathered into a small pool of large buffers, and each
/// submitted buffer is hashed (SHA-256) on one thread and written to the wrapped sink on another,
/// both in order.
///
/// The producer (one thread) never waits for a write unless every buffer is taken, so hashing and
/// writing one tensor's output overlap the amax pass and the codec of the following tensors; and
/// hashing and writing are separate stages, so the slower of the two sets the pace, not their sum.
/// (With two wave buffers per tensor, most tensors of a model, whose packed output fits one buffer,
/// were computed, then hashed and written, one after the other.) Several small tensors share a
/// buffer, so the pool holds many tensors' output while the stages are busy with a large kept
/// tensor (an embedding) written straight from the input's mapping (``write(retaining:completion:)``).
///
/// Two ways to write, both in output order:
/// - ``write(_:)`` copies bytes (headers, scalars, block scales, kept tensors);
/// - ``reserve(byteCount:)`` / ``commit(byteCount:)`` let the codec fill a pool buffer directly.
///
/// The first error of the wrapped sink is rethrown by the next call on the producer's side, and
/// nothing more is written after it; ``abort()`` drops what is still queued. Memory: `bufferCount`
/// buffers of `bufferBytes` (a buffer grows when a single reservation needs more).
public final class WriteBehindSink: OutputSink {
    public var displayPath: String { stages.inner.displayPath }
    private let stages: Stages
    private let bufferBytes: Int
    /// The buffer being filled and how much of it is (producer thread only).
    private var filling: Buffer?
    private var filled = 0

    /// - Parameters:
    ///   - inner: Where the bytes go.
    ///   - bufferCount: Buffers in the pool (at least 2).
    ///   - bufferBytes: Size of each buffer.
    ///   - hashing: Whether ``seal()`` reports the SHA-256 of everything written (computed here;
    ///     `inner` need not hash). Without it, ``seal()`` reports `inner`'s.
    public init(wrapping inner: any OutputSink, bufferCount: Int = 8, bufferBytes: Int = 8 << 20, hashing: Bool = true) {
        precondition(bufferCount >= 2 && bufferBytes > 0)
        stages = Stages(inner: inner, bufferCount: bufferCount, hashing: hashing)
        self.bufferBytes = bufferBytes
    }

    deinit {
        stages.drain()
        // Every buffer back in the pool: libdispatch traps when a semaphore is destroyed below its
        // initial value (after a failure, the buffer being filled was never submitted).
        if let buffer = filling { stages.giveBack(buffer) }
        stages.pool.withLock { buffers in
            for buffer in buffers { buffer.bytes.deallocate() }
            buffers.removeAll()
        }
    }

    /// Copies `bytes` into the pool; full buffers go to the stages.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let target = try space(atLeast: 1)
            let n = min(target.count, bytes.count - offset)
            target.baseAddress!.copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
            filled += n
            offset += n
            if filled == filling!.bytes.count { submitFilling() }
        }
    }

    /// Writes `bytes` without copying them, after everything before: the caller keeps them valid
    /// and unchanged until `completion` runs, on a stage thread, once both stages are done with
    /// them. A kept tensor of a mapped input is written this way straight from the mapping, so the
    /// producer moves on to the next tensor at once.
    public func write(retaining bytes: UnsafeRawBufferPointer, completion: @escaping @Sendable () -> Void) throws {
        try stages.throwIfFailed()
        submitPending()
        stages.submit(bytes, whenDone: completion)
    }

    /// Room for the next `byteCount` bytes of output, in a pool buffer, to be filled and then
    /// passed to ``commit(byteCount:)``; nothing else may be written in between.
    public func reserve(byteCount: Int) throws -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: try space(atLeast: byteCount)[0..<byteCount])
    }

    /// Appends the first `byteCount` reserved bytes; the buffer goes to the stages when it is full
    /// (or when the next reservation does not fit, or at ``flush()``).
    public func commit(byteCount: Int) {
        precondition(filling != nil && filled + byteCount <= filling!.bytes.count, "commit(byteCount:) without a matching reserve")
        filled += byteCount
        if filled == filling!.bytes.count { submitFilling() }
    }

    /// Hands a partly filled buffer to the stages now, without waiting.
    public func submitPending() {
        if filling != nil && filled > 0 { submitFilling() }
    }

    /// Waits until everything submitted is hashed and written; rethrows the first write error.
    public func flush() throws {
        submitPending()
        stages.drain()
        try stages.throwIfFailed()
    }

    public func seal() throws -> (sha256: String?, byteCount: UInt64) {
        try flush()
        let result = try stages.inner.seal()
        guard let digest = stages.digest() else { return result }
        return (digest, result.byteCount)
    }

    public func publish() throws { try stages.inner.publish() }

    public func abort() {
        stages.cancel()  // what is still queued is dropped, not written
        stages.drain()  // no write or hash may still read a pool buffer
        stages.inner.abort()
    }

    /// Free space in the buffer being filled, at least `count` bytes (taking a new buffer if needed).
    private func space(atLeast count: Int) throws -> UnsafeMutableRawBufferPointer {
        try stages.throwIfFailed()
        if let buffer = filling, buffer.bytes.count - filled >= count {
            return UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[filled...])
        }
        submitPending()
        if filling == nil { filling = stages.takeBuffer(minimumBytes: bufferBytes) }
        if filling!.bytes.count < count {
            filling!.bytes.deallocate()
            filling!.bytes = .allocate(byteCount: max(count, bufferBytes), alignment: 4096)
        }
        try stages.throwIfFailed()
        return UnsafeMutableRawBufferPointer(rebasing: filling!.bytes[filled...])
    }

    private func submitFilling() {
        guard let buffer = filling else { return }
        let bytes = UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<filled])
        filling = nil
        filled = 0
        stages.submit(bytes) { [stages] in stages.giveBack(buffer) }
    }
}

/// The state the producer shares with the hashing and writing stages. Stage work captures only
/// this, never the sink, so the sink's `deinit` (which waits for the stages) always runs on the
/// producer's side.
private final class Stages: @unchecked Sendable {
    let inner: any OutputSink
    private let writerQueue = DispatchQueue(label: "nvfp4.write-behind")
    private let hashQueue = DispatchQueue(label: "nvfp4.output-hash")
    private let hashing: Bool
    /// Touched only on `hashQueue`, and after it is drained.
    private var hasher = SHA256()
    /// Counts the buffers in `pool`.
    private let freeBuffers: DispatchSemaphore
    let pool: Mutex<[Buffer]>
    private let failure = Mutex<(any Error)?>(nil)

    init(inner: any OutputSink, bufferCount: Int, hashing: Bool) {
        self.inner = inner
        self.hashing = hashing
        freeBuffers = DispatchSemaphore(value: bufferCount)
        pool = Mutex((0..<bufferCount).map { _ in Buffer(bytes: UnsafeMutableRawBufferPointer(start: nil, count: 0)) })
    }

    /// A free buffer (waiting for one if none is); allocated on first use.
    func takeBuffer(minimumBytes: Int) -> Buffer {
        freeBuffers.wait()
        var buffer = pool.withLock { $0.removeLast() }
        if buffer.bytes.count == 0 { buffer.bytes = .allocate(byteCount: minimumBytes, alignment: 4096) }
        return buffer
    }

    func giveBack(_ buffer: Buffer) {
        pool.withLock { $0.append(buffer) }
        freeBuffers.signal()
    }

    /// Hands `bytes` to the hashing and the writing stage; `whenDone` runs after both.
    func submit(_ bytes: UnsafeRawBufferPointer, whenDone: @escaping @Sendable () -> Void) {
        let count = StageCount(hashing ? 2 : 1)
        let finishStage: @Sendable () -> Void = {
            if count.remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { whenDone() }
        }
        let shared = SharedBytes(bytes: bytes)
        if hashing {
            hashQueue.async { [self] in
                if failure.withLock({ $0 == nil }) { hasher.update(bufferPointer: shared.bytes) }
                finishStage()
            }
        }
        writerQueue.async { [self] in
            if failure.withLock({ $0 == nil }) {
                do { try inner.write(shared.bytes) } catch {
                    failure.withLock { $0 = error }
                }
            }
            finishStage()
        }
    }

    /// Makes both stages skip what is still queued (their buffers still come back).
    func cancel() {
        failure.withLock { if $0 == nil { $0 = CancellationError() } }
    }

    /// Waits until both stages are idle.
    func drain() {
        writerQueue.sync {}
        hashQueue.sync {}
    }

    /// The SHA-256 of everything submitted (after ``drain()``), or `nil` without hashing.
    func digest() -> String? { hashing ? hasher.finalize().hexString : nil }

    func throwIfFailed() throws {
        if let error = failure.withLock({ $0 }) { throw error }
    }
}

/// A pool buffer, handed between the producer and the two stages.
private struct Buffer: @unchecked Sendable {
    var bytes: UnsafeMutableRawBufferPointer
}

/// A submitted buffer's bytes, read by a stage while the producer fills other buffers.
private struct SharedBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
}

/// How many stages still read a submitted buffer.
private final class StageCount: Sendable {
    let remaining: Atomic<Int>
    init(_ count: Int) { remaining = Atomic(count) }
}
