import Glibc
import Synchronization

/// Temporary output files that must disappear if the process is interrupted.
///
/// SIGINT, SIGTERM, SIGHUP and SIGPIPE handlers unlink every registered path (`unlink` is
/// async-signal-safe), restore the default action and re-raise, so the exit status still says
/// which signal ended the process.
public enum TemporaryFileRegistry {
    private static let capacity = 64
    nonisolated(unsafe) private static let slots: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
        p.initialize(repeating: nil, count: capacity)
        return p
    }()
    nonisolated(unsafe) private static var installed = false

    /// Installs the signal handlers (idempotent).
    public static func installSignalHandlers() {
        guard !installed else { return }
        installed = true
        _ = slots
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                TemporaryFileRegistry.unlinkAll()
                Glibc.signal(signal, SIG_DFL)
                raise(signal)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
        // A parent may have left these blocked (a blocked mask survives exec); unblock them so
        // Ctrl-C and `kill` still reach the handlers.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGBUS] { sigaddset(&unblock, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        // Past `ulimit -f`, write(2) must fail with EFBIG (reported, output removed) rather
        // than the default SIGXFSZ killing the process and leaving the temporary file behind.
        Glibc.signal(SIGXFSZ, SIG_IGN)
        MappedRegionRegistry.installSignalHandler()
    }

    /// Serializes the changes to the slots, which several threads make (concurrent tests, a
    /// model folder's shards); the signal handlers only read them.
    private static let lock = Mutex(())

    /// Registers `path`; returns a slot to pass to ``unregister(_:)``.
    static func register(_ path: String) -> Int? {
        lock.withLock { _ -> Int? in
            for i in 0..<capacity where slots[i] == nil {
                slots[i] = strdup(path)
                return i
            }
            return nil
        }
    }

    /// Forgets a registered path (after it was renamed or removed).
    ///
    /// The path's copy is not freed: a signal handler on another thread may be reading it at this
    /// moment (handlers cannot take the lock). It is a few bytes per output file.
    static func unregister(_ slot: Int?) {
        guard let slot else { return }
        lock.withLock { _ in slots[slot] = nil }
    }

    /// Removes every registered file at once (from another signal handler).
    static func removeAllNow() { unlinkAll() }

    private static func unlinkAll() {
        for i in 0..<capacity {
            if let p = slots[i] { unlink(p) }
        }
        for i in 0..<folderCapacity {
            if let p = folderSlots[i] { removeFlatFolder(p) }
        }
    }

    // MARK: Temporary folders

    private static let folderCapacity = 8
    nonisolated(unsafe) private static let folderSlots: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: folderCapacity)
        p.initialize(repeating: nil, count: folderCapacity)
        return p
    }()
    /// A preallocated buffer for `getdents64`, so the signal handler allocates nothing.
    nonisolated(unsafe) private static let direntBuffer = UnsafeMutableRawPointer.allocate(byteCount: 32768, alignment: 8)

    /// Registers a temporary folder that holds only files: on a signal its files are unlinked
    /// and the folder removed. Returns a slot for ``unregisterFolder(_:)``.
    static func registerFolder(_ path: String) -> Int? {
        _ = folderSlots
        _ = direntBuffer
        return lock.withLock { _ -> Int? in
            for i in 0..<folderCapacity where folderSlots[i] == nil {
                folderSlots[i] = strdup(path)
                return i
            }
            return nil
        }
    }

    /// Forgets a registered folder (after it was renamed or removed).
    static func unregisterFolder(_ slot: Int?) {
        guard let slot else { return }
        lock.withLock { _ in folderSlots[slot] = nil }  // not freed: see unregister(_:)
    }

    /// Unlinks every entry of a flat folder and removes it, with system calls only
    /// (`open`, `getdents64`, `unlinkat`, `rmdir`), which are async-signal-safe.
    static func removeFlatFolder(_ path: UnsafePointer<CChar>) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            while true {
                let n = LinuxSyscall.getdents64(fd, direntBuffer, 32768)
                if n <= 0 { break }
                var offset = 0
                while offset < n {
                    let record = direntBuffer + offset
                    let length = Int(record.load(fromByteOffset: 16, as: UInt16.self))
                    let name = (record + 19).assumingMemoryBound(to: CChar.self)
                    let isDot = name[0] == 0x2E && (name[1] == 0 || (name[1] == 0x2E && name[2] == 0))
                    if !isDot { unlinkat(fd, name, 0) }
                    offset += length
                }
            }
            close(fd)
        }
        rmdir(path)
    }
}

/// Linux calls that glibc (≥ 2.30) exports but Swift's Glibc module hides behind `_GNU_SOURCE`.
enum LinuxSyscall {
    /// `ssize_t getdents64(int fd, void *buffer, size_t length)`: async-signal-safe directory reading.
    @_silgen_name("getdents64")
    static func getdents64(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ length: Int) -> Int

    @_silgen_name("renameat2")
    private static func renameat2(
        _ olddirfd: Int32, _ oldpath: UnsafePointer<CChar>, _ newdirfd: Int32, _ newpath: UnsafePointer<CChar>, _ flags: UInt32
    ) -> Int32

    /// `renameat2` flags.
    static let renameNoReplace: UInt32 = 1
    static let renameExchange: UInt32 = 2

    /// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)`: 0, or -1 with `errno`.
    static func rename(_ from: String, _ to: String, flags: UInt32) -> Int32 {
        renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)
    }
}
