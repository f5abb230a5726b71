import CNVFP4Kernel

/// Hands freed heap pages back to the system.
///
/// glibc keeps the pages of freed small allocations resident. After a million-tensor header is
/// parsed and planned, the parser's and planner's transients (hundreds of MB of key strings and
/// tables) are freed but would still count against the process until exit; this returns them.
enum FreedMemory {
    /// Returns the free pages of every malloc arena to the system (microseconds on a small heap).
    static func release() { _ = nvfp4_release_freed_memory() }
}
