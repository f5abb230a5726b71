import CNVFP4Kernel
import Dispatch
import Glibc
import Synchronization

/// Runs independent iterations on a fixed number of threads.
///
/// Work is split by the caller into pieces whose boundaries never depend on the thread count, and
/// results are combined in piece order, so output is identical for any number of threads.
public enum ParallelLoop {
    /// The online processors.
    /// The CPUs this process may run on (its affinity mask, so `taskset` and container CPU sets
    /// count), or the online CPUs where the mask cannot be read.
    public static var availableCores: Int {
        let count = Int(nvfp4_affinity_cpu_count())
        if count > 0 { return count }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Calls `body(i)` for `i` in `0..<iterations`, on up to `threads` threads; returns when all are done.
    public static func run(iterations: Int, threads: Int, _ body: (Int) -> Void) {
        let workers = min(max(1, threads), iterations)
        if workers <= 1 {
            for i in 0..<iterations { body(i) }
            return
        }
        // Iterations are handed out one at a time, not split in advance: when another thread (the
        // output's hashing or writing) takes a core from one worker, the others take its share.
        let next = IterationCounter()
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendableBox(body)
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while true {
                    let i = next.value.add(1, ordering: .relaxed).oldValue
                    if i >= iterations { break }
                    box.value(i)
                }
            }
        }
    }

    /// `DenseMatrix.magnitudeMaximum()` over row bands in parallel; the result does not depend on `threads`.
    public static func magnitudeMaximum(_ matrix: DenseMatrix, threads: Int) -> (amax: Float, firstNonFinite: Int?) {
        let bandRows = 256
        let bands = max(1, ceilDiv(matrix.rows, bandRows))
        if threads <= 1 || bands == 1 { return matrix.magnitudeMaximum() }
        var results = [(amax: Float, firstNonFinite: Int?)](repeating: (0, nil), count: bands)
        let rowBytes = matrix.columns * matrix.dtype.bitWidth / 8
        results.withUnsafeMutableBufferPointer { out in
            let out = out
            run(iterations: bands, threads: threads) { band in
                let rows = (band * bandRows)..<min(matrix.rows, (band + 1) * bandRows)
                let part = DenseMatrix(
                    bytes: UnsafeRawBufferPointer(rebasing: matrix.bytes[(rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)]),
                    dtype: matrix.dtype, rows: rows.count, columns: matrix.columns)
                let r = part.magnitudeMaximum()
                out[band] = (r.amax, r.firstNonFinite.map { $0 + rows.lowerBound * matrix.columns })
            }
        }
        var amax: Float = 0
        for r in results {
            if let bad = r.firstNonFinite { return (r.amax, bad) }
            amax = max(amax, r.amax)
        }
        return (amax, nil)
    }
}

/// The next iteration to hand out.
private final class IterationCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// Carries a value into `concurrentPerform`'s closure; the caller guarantees the accesses are disjoint.
private struct UnsafeSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
