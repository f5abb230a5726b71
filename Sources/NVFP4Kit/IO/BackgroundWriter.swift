import Dispatch

/// Writes buffers to a sink on a background thread, one at a time, so that producing the next
/// buffer overlaps hashing and writing the previous one.
///
/// The caller owns the sink's ordering: while a write is pending it must not touch the sink or the
/// submitted bytes; ``waitForPendingWrite()`` ends that period and rethrows the write's error.
final class BackgroundWriter: @unchecked Sendable {
    private let sink: any OutputSink
    private let queue = DispatchQueue(label: "nvfp4.background-writer")
    private let pending = DispatchGroup()
    private var hasPending = false
    // Written on `queue`, read after `pending.wait()`, which orders the two.
    private var failure: (any Error)?

    init(sink: any OutputSink) { self.sink = sink }

    /// Starts writing `bytes`; they must stay valid and unchanged until the next wait.
    func submit(_ bytes: UnsafeRawBufferPointer) {
        precondition(!hasPending, "BackgroundWriter: one write at a time")
        hasPending = true
        let chunk = UnsafeBytes(bytes: bytes)
        pending.enter()
        queue.async { [self] in
            if failure == nil {
                do { try sink.write(chunk.bytes) } catch { failure = error }
            }
            pending.leave()
        }
    }

    /// Waits for the pending write, if any; rethrows the first write error.
    func waitForPendingWrite() throws {
        if hasPending {
            pending.wait()
            hasPending = false
        }
        if let failure { throw failure }
    }

    /// Waits without throwing (for cleanup paths, where the first error is already on its way).
    func finishQuietly() {
        if hasPending {
            pending.wait()
            hasPending = false
        }
    }
}

/// Bytes handed to another thread; the submitter guarantees they outlive the write.
private struct UnsafeBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
}
