import CNVFP4Kernel
import Synchronization

/// A row-major FP8 (E4M3FN) matrix and its scales, which the codec reads as its dequantized rows
/// one 128-row chunk at a time: the dequantized chunk stays in cache between the dequantizer and
/// the codec, and no dequantized copy of the tensor is ever held.
public struct FP8Matrix: @unchecked Sendable {
    /// The whole matrix's codes.
    public let codes: UnsafeRawBufferPointer
    /// Rows of the whole matrix, and of this view.
    public let totalRows: Int
    public let rows: Int
    public let columns: Int
    /// The whole matrix's scale grid (``FP8Scaling/grid(rows:columns:)``).
    public let scales: [Float]
    public let scaling: FP8Scaling
    /// The first row of this view in the whole matrix.
    public let firstRow: Int

    public init(codes: UnsafeRawBufferPointer, rows: Int, columns: Int, scales: [Float], scaling: FP8Scaling) {
        precondition(codes.count == rows * columns)
        let grid = scaling.grid(rows: rows, columns: columns)
        precondition(scales.count == grid.rows * grid.columns)
        self.codes = codes
        totalRows = rows
        self.rows = rows
        self.columns = columns
        self.scales = scales
        self.scaling = scaling
        firstRow = 0
    }

    private init(_ base: FP8Matrix, rows range: Range<Int>) {
        codes = base.codes
        totalRows = base.totalRows
        rows = range.count
        columns = base.columns
        scales = base.scales
        scaling = base.scaling
        firstRow = base.firstRow + range.lowerBound
    }

    /// The matrix made of `range` of this view's rows.
    public func rows(_ range: Range<Int>) -> FP8Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        return FP8Matrix(self, rows: range)
    }

    /// Bytes of `count` dequantized rows.
    public func denseByteCount(rows count: Int) -> Int { count * columns * scaling.target.bitWidth / 8 }

    /// Dequantizes this view's rows `range` into `buffer` (single-threaded) and returns them as a
    /// dense matrix over `buffer`.
    public func dequantize(_ range: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) -> DenseMatrix {
        let out = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<denseByteCount(rows: range.count)])
        scales.withUnsafeBufferPointer { scale in
            _ = FP8Dequantizer.dequantizeRows(
                codes: codes, rows: (firstRow + range.lowerBound)..<(firstRow + range.upperBound), matrixRows: totalRows, columns: columns,
                scales: scale, scaling: scaling, into: out.baseAddress!, firstRow: firstRow + range.lowerBound)
        }
        return DenseMatrix(bytes: UnsafeRawBufferPointer(out), dtype: scaling.target, rows: range.count, columns: columns)
    }

    /// The dtype the codec reads these rows in: bf16 for a bf16 target (the codec's fastest input),
    /// else fp32 (an f16 value widened exactly; the codec reads f16 only through a scalar path).
    public var codecDType: DType { scaling.target == .bf16 ? .bf16 : .f32 }

    /// Bytes of `count` rows as the codec reads them (``codecDType``).
    public func codecByteCount(rows count: Int) -> Int { count * columns * codecDType.bitWidth / 8 }

    /// This view's rows `range` as the codec reads them, dequantized in one kernel call into
    /// `buffer`: each value equal to the dequantization in ``FP8Scaling/target`` (what
    /// ``dequantize(_:into:)`` stores), held in ``codecDType`` (`nvfp4_fp8_e4m3_dequantize_rows`).
    public func codecRows(_ range: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) -> DenseMatrix {
        let out = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<codecByteCount(rows: range.count)])
        let first = firstRow + range.lowerBound
        if !range.isEmpty {
            scales.withUnsafeBufferPointer { scale in
                nvfp4_fp8_e4m3_dequantize_rows(
                    codes.baseAddress!.assumingMemoryBound(to: UInt8.self) + first * columns, range.count, columns, scale.baseAddress!, first,
                    scaling.blockRows, scaling.blockColumns, scaling.kernelTarget, out.baseAddress!)
            }
        }
        return DenseMatrix(bytes: UnsafeRawBufferPointer(out), dtype: codecDType, rows: range.count, columns: columns)
    }

    /// The largest magnitude of the dequantized matrix (NaN when a code is NaN; infinite when a
    /// value overflows), from each scale block's largest code: |code| orders as its magnitude bits,
    /// and the multiply by |scale| and the rounding are monotonic. One pass over the codes only.
    public func magnitudeMaximum(threads: Int) -> Float {
        let grid = scaling.grid(rows: totalRows, columns: columns)
        let rowsPerTask = 64
        let tasks = ceilDiv(rows, rowsPerTask)
        guard tasks > 0 else { return 0 }
        var partial = [Float](repeating: 0, count: tasks)
        let base = codes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        partial.withUnsafeMutableBufferPointer { results in
            let out = results
            scales.withUnsafeBufferPointer { scale in
                ParallelLoop.run(iterations: tasks, threads: threads) { task in
                    var largest: Float = 0
                    for row in (firstRow + task * rowsPerTask)..<(firstRow + min(rows, (task + 1) * rowsPerTask)) {
                        var column = 0
                        for g in 0..<grid.columns {
                            let count = min(scaling.blockColumns, columns - column)
                            let code = nvfp4_fp8_e4m3_max_magnitude_code(base + row * columns + column, count)
                            let s = scale[(row / scaling.blockRows) * grid.columns + g].magnitude
                            let value = code == 0x7F ? Float.nan : FP8Matrix.magnitude(ofCode: code) * s
                            largest = value.isNaN || largest.isNaN ? .nan : Swift.max(largest, value)
                            column += count
                        }
                    }
                    out[task] = largest
                }
            }
        }
        if partial.contains(where: \.isNaN) { return .nan }
        return FP8Dequantizer.rounded(partial.max()!, to: scaling.target)
    }

    /// The row-major index of the first element whose dequantized value is not finite, dequantizing
    /// 128-row chunks into `buffers`.
    public func firstNonFinite(buffers: ChunkBuffers) -> Int? {
        for start in stride(from: 0, to: rows, by: 128) {
            let range = start..<Swift.min(rows, start + 128)
            let bad = buffers.with(byteCount: denseByteCount(rows: range.count)) { dequantize(range, into: $0).magnitudeMaximum().firstNonFinite }
            if let bad { return start * columns + bad }
        }
        return nil
    }

    /// The value of a non-negative E4M3FN code (0 … 0x7E).
    static func magnitude(ofCode code: UInt8) -> Float {
        let exponent = Int(code >> 3), mantissa = Float(code & 7)
        return exponent == 0
            ? mantissa * Float(sign: .plus, exponent: -9, significand: 1)
            : (8 + mantissa) * Float(sign: .plus, exponent: exponent - 10, significand: 1)
    }
}

/// The rows the codec reads: a dense matrix, or an FP8 matrix dequantized chunk by chunk.
enum CodecRows {
    case dense(DenseMatrix)
    case fp8(FP8Matrix, ChunkBuffers)

    var rows: Int {
        switch self {
        case .dense(let m): return m.rows
        case .fp8(let m, _): return m.rows
        }
    }

    var columns: Int {
        switch self {
        case .dense(let m): return m.columns
        case .fp8(let m, _): return m.columns
        }
    }

    func rows(_ range: Range<Int>) -> CodecRows {
        switch self {
        case .dense(let m): return .dense(m.rows(range))
        case .fp8(let m, let buffers): return .fp8(m.rows(range), buffers)
        }
    }

    /// The largest magnitude of the rows as the codec reads them (an FP8 matrix's from its codes
    /// and scales, dequantizing only to find a non-finite element).
    ///
    /// - Throws: ``FileError`` (`path`) naming the first non-finite element of `tensor`.
    func magnitudeMaximum(tensor: String, threads: Int, path: String) throws(FileError) -> Float {
        let amax: Float, bad: Int?
        switch self {
        case .dense(let m): (amax, bad) = ParallelLoop.magnitudeMaximum(m, threads: threads)
        case .fp8(let m, let buffers):
            amax = m.magnitudeMaximum(threads: threads)
            bad = amax.isFinite ? nil : m.firstNonFinite(buffers: buffers) ?? 0
        }
        guard let bad else { return amax }
        throw FileError(path: path, cause: WeightError.nonFinite(tensor: tensor, index: bad, row: bad / columns, column: bad % columns))
    }
}

/// Buffers for dequantized chunks, one per worker at a time, reused from chunk to chunk and from
/// tensor to tensor.
public final class ChunkBuffers: Sendable {
    /// A buffer owned by the pool between uses.
    private struct Held: @unchecked Sendable { var bytes: UnsafeMutableRawBufferPointer }
    private let free = Mutex<[Held]>([])

    public init() {}

    deinit { free.withLock { for b in $0 { b.bytes.deallocate() } } }

    /// Calls `body` with a buffer of at least `byteCount` bytes that no other caller holds meanwhile.
    func with<R>(byteCount: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        var held = free.withLock { $0.popLast() } ?? Held(bytes: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        if held.bytes.count < byteCount {
            held.bytes.deallocate()
            held.bytes = .allocate(byteCount: byteCount, alignment: 64)
        }
        let returned = held
        defer { free.withLock { $0.append(returned) } }
        return try body(held.bytes)
    }
}
