import Glibc

/// Where a long job is: which file of how many, which tensor, how many bytes of how many. Jobs
/// (quantize, verify, dequantize, check, merge) report to it from the thread that drives them;
/// whoever made it decides how to show it (``JobProgress/Snapshot`` is handed to `report`).
public final class JobProgress: @unchecked Sendable {
    /// One moment of a job.
    public struct Snapshot: Sendable {
        /// What happened: a file started, work advanced, or a file finished.
        public enum Event: Sendable { case fileStarted, advanced, fileFinished }
        public var event: Event
        /// The current file's name and its position (0-based) among `fileCount`.
        public var file: String
        public var fileIndex: Int
        public var fileCount: Int
        /// The tensor or module being worked on.
        public var item: String
        public var bytesDone: UInt64
        public var bytesTotal: UInt64
        /// Bytes done in the current file, and its size.
        public var fileBytesDone: UInt64
        public var fileBytesTotal: UInt64
        /// Seconds since the job started, and since the current file started.
        public var elapsed: Double
        public var fileElapsed: Double
    }

    private let report: (Snapshot) -> Void
    private let start = JobProgress.now()
    private var snapshot: Snapshot
    private var fileStart = 0.0

    /// A job over `fileCount` files and `bytesTotal` bytes of work.
    public init(fileCount: Int, bytesTotal: UInt64, report: @escaping (Snapshot) -> Void) {
        self.report = report
        snapshot = Snapshot(
            event: .advanced, file: "", fileIndex: -1, fileCount: fileCount, item: "", bytesDone: 0, bytesTotal: bytesTotal,
            fileBytesDone: 0, fileBytesTotal: 0, elapsed: 0, fileElapsed: 0)
    }

    /// The next file starts; `bytes` is its share of the work.
    public func startFile(_ name: String, bytes: UInt64) {
        fileStart = JobProgress.now()
        snapshot.file = name
        snapshot.fileIndex += 1
        snapshot.fileBytesDone = 0
        snapshot.fileBytesTotal = bytes
        snapshot.item = ""
        send(.fileStarted)
    }

    /// `bytes` more are done, working on `item`.
    public func advance(_ bytes: UInt64, item: String) {
        snapshot.bytesDone += bytes
        snapshot.fileBytesDone += bytes
        snapshot.item = item
        send(.advanced)
    }

    /// The current file is done.
    public func finishFile() { send(.fileFinished) }

    private func send(_ event: Snapshot.Event) {
        snapshot.event = event
        let now = JobProgress.now()
        snapshot.elapsed = now - start
        snapshot.fileElapsed = now - fileStart
        report(snapshot)
    }

    /// Monotonic seconds.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
