import Glibc

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

    /// Registers `path`; returns a slot to pass to ``unregister(_:)``.
    static func register(_ path: String) -> Int? {
        for i in 0..<capacity where slots[i] == nil {
            slots[i] = strdup(path)
            return i
        }
        return nil
    }

    /// Forgets a registered path (after it was renamed or removed).
    static func unregister(_ slot: Int?) {
        guard let slot, let p = slots[slot] else { return }
        slots[slot] = nil
        free(p)
    }

    /// Removes every registered file at once (from another signal handler).
    static func removeAllNow() { unlinkAll() }

    private static func unlinkAll() {
        for i in 0..<capacity {
            if let p = slots[i] { unlink(p) }
        }
    }
}
