import Glibc
import Synchronization

/// Size and modification time of a file, compared before and after reading it.
struct FileFingerprint: Equatable {
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int
    var changedSeconds: Int
    var changedNanoseconds: Int

    init(_ st: stat) {
        size = Int64(st.st_size)
        modifiedSeconds = st.st_mtim.tv_sec
        modifiedNanoseconds = st.st_mtim.tv_nsec
        changedSeconds = st.st_ctim.tv_sec
        changedNanoseconds = st.st_ctim.tv_nsec
    }
}

/// The memory-mapped input files, so that a `SIGBUS` (a mapped file was truncated while being
/// read) ends the process with a one-line error naming the file instead of a crash.
///
/// The handler is async-signal-safe: it finds the mapping that holds the faulting address,
/// writes `error: <path>: the file shrank while it was being read; nothing was written` with
/// `write(2)`, removes the temporary output files (``TemporaryFileRegistry``) and `_exit`s with
/// status 2.
public enum MappedRegionRegistry {
    private struct Region {
        var start: UInt
        var end: UInt
        var path: UnsafeMutablePointer<CChar>?
    }

    private static let capacity = 64
    nonisolated(unsafe) private static let regions: UnsafeMutablePointer<Region> = {
        let p = UnsafeMutablePointer<Region>.allocate(capacity: capacity)
        p.initialize(repeating: Region(start: 0, end: 0, path: nil), count: capacity)
        return p
    }()
    nonisolated(unsafe) private static var installed = false
    /// Serializes register and unregister: files are mapped and unmapped on several threads (a
    /// mapping's last user may be the output's writer thread; tests run concurrently). The signal
    /// handler only reads.
    private static let lock = Mutex(())
    /// Set by the first thread that takes the `SIGBUS` handler.
    private static let reporting = Atomic<Bool>(false)

    /// Installs the `SIGBUS` handler (idempotent).
    public static func installSignalHandler() {
        guard !installed else { return }
        installed = true
        _ = regions
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { _, info, _ in
            MappedRegionRegistry.reportAndExit(address: info.map { UInt(bitPattern: $0.pointee._sifields._sigfault.si_addr) } ?? 0)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_SIGINFO
        sigaction(SIGBUS, &action, nil)
    }

    static func register(_ bytes: UnsafeRawBufferPointer, path: String) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        return lock.withLock { _ -> Int? in
            for i in 0..<capacity where regions[i].path == nil {
                let start = UInt(bitPattern: base)
                regions[i] = Region(start: start, end: start + UInt(bytes.count), path: strdup(path))
                return i
            }
            return nil
        }
    }

    /// Forgets a mapping. Its path's copy is not freed: the `SIGBUS` handler may be reading it on
    /// another thread at this moment (it cannot take the lock). A few bytes per mapped file.
    static func unregister(_ slot: Int?) {
        guard let slot else { return }
        lock.withLock { _ in regions[slot] = Region(start: 0, end: 0, path: nil) }
    }

    private static func reportAndExit(address: UInt) -> Never {
        // Several threads may read the shrunk mapping at once (codec workers, the output's hashing
        // and writing stages): the first reports and ends the process, the others wait for that.
        guard reporting.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged else {
            while true { pause() }
        }
        var path: UnsafeMutablePointer<CChar>?
        for i in 0..<capacity where regions[i].path != nil && regions[i].start <= address && address < regions[i].end {
            path = regions[i].path
        }
        writeText(2, "error: ")
        if let path {
            _ = write(2, path, strlen(path))
            writeText(2, ": the file shrank while it was being read; nothing was written\n")
        } else {
            writeText(2, "bus error reading a mapped file (it shrank while being read?); nothing was written\n")
        }
        TemporaryFileRegistry.removeAllNow()
        _exit(2)
    }

    /// Writes a static string with `write(2)` (async-signal-safe: no allocation).
    private static func writeText(_ fd: Int32, _ text: StaticString) {
        _ = write(fd, text.utf8Start, text.utf8CodeUnitCount)
    }
}
