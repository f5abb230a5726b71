import CNVFP4Kernel

/// How an FP8 (E4M3FN) weight is turned back into the high-precision weight its reference
/// dequantizer produces: which scale covers which elements, and the dtype of the result.
///
/// Every scheme is a grid of scales over the last two dimensions: a block grid
/// (`[⌈N/bn⌉, ⌈K/bk⌉]`, edge blocks partial), per channel (`bn = 1, bk = K`) or per tensor
/// (`bn = N, bk = K`); a 3-D weight `[E, N, K]` has one grid per expert.
public struct FP8Scaling: Sendable, Equatable {
    /// Rows of the weight one scale covers.
    public var blockRows: Int
    /// Columns of the weight one scale covers.
    public var blockColumns: Int
    /// The dequantized dtype: bf16 for DeepSeek's `fp8_cast_bf16`; the scale's dtype for
    /// compressed-tensors (`dequantize` computes in it).
    public var target: DType

    public init(blockRows: Int, blockColumns: Int, target: DType) {
        self.blockRows = blockRows
        self.blockColumns = blockColumns
        self.target = target
    }

    /// The C kernel's name for ``target``.
    var kernelTarget: Int32 {
        switch target {
        case .bf16: Int32(NVFP4_FP8_TARGET_BF16)
        case .f16: Int32(NVFP4_FP8_TARGET_F16)
        default: Int32(NVFP4_FP8_TARGET_F32)
        }
    }

    /// Scales along the rows and columns of an `N × K` matrix.
    public func grid(rows: Int, columns: Int) -> (rows: Int, columns: Int) {
        (ceilDiv(rows, max(blockRows, 1)), ceilDiv(columns, max(blockColumns, 1)))
    }
}

/// The FP8 dequantizer: DeepSeek's `weight_dequant` / compressed-tensors' `dequantize`
/// arithmetic (E4M3FN → fp32 exactly, one fp32 multiply by the scale, one rounding to the
/// target), in the C kernel `nvfp4_fp8_e4m3_dequantize`.
public enum FP8Dequantizer {
    /// The dtypes a scale may be stored in.
    public static let scaleDTypes: Set<DType> = [.f32, .bf16, .f16, .f8E8M0]

    /// The scale values of `bytes` (little-endian `dtype`, ``scaleDTypes``) widened exactly to fp32.
    /// An E8M0 byte `e` is 2^(e-127) (`0xFF` is NaN).
    public static func scaleValues(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> [Float] {
        precondition(scaleDTypes.contains(dtype))
        let count = bytes.count * 8 / dtype.bitWidth
        return (0..<count).map { i in
            switch dtype {
            case .f32: return Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            case .bf16: return BFloat16.toFloat(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            case .f16: return Float(Float16(bitPattern: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
            default:
                let e = bytes[i]
                return e == 0xFF ? .nan : Float(sign: .plus, exponent: Int(e) - 127, significand: 1)
            }
        }
    }

    /// Dequantizes `codes`, `matrices` row-major `rows × columns` FP8 matrices, into `out`
    /// (the same shape in `scaling.target`), on `threads` threads; `scales` holds each matrix's
    /// grid (``FP8Scaling/grid(rows:columns:)``), matrix after matrix. The bytes do not depend on
    /// `threads`.
    ///
    /// - Returns: The largest magnitude written (NaN when a value is NaN; infinite when one
    ///   overflowed the target), found in the same pass.
    @discardableResult
    public static func dequantize(
        codes: UnsafeRawBufferPointer, matrices: Int, rows: Int, columns: Int, scales: [Float], scaling: FP8Scaling,
        into out: UnsafeMutableRawBufferPointer, threads: Int
    ) -> Float {
        let grid = scaling.grid(rows: rows, columns: columns)
        let width = scaling.target.bitWidth / 8
        precondition(codes.count == matrices * rows * columns && out.count == codes.count * width)
        precondition(scales.count == matrices * grid.rows * grid.columns)
        let totalRows = matrices * rows
        let rowsPerTask = 64
        let tasks = ceilDiv(totalRows, rowsPerTask)
        guard tasks > 0 else { return 0 }
        var largest = [UInt32](repeating: 0, count: tasks)
        largest.withUnsafeMutableBufferPointer { partial in
            let results = partial
            scales.withUnsafeBufferPointer { scale in
                ParallelLoop.run(iterations: tasks, threads: threads) { task in
                    let range = (task * rowsPerTask)..<min(totalRows, (task + 1) * rowsPerTask)
                    results[task] = dequantizeRows(
                        codes: codes, rows: range, matrixRows: rows, columns: columns, scales: scale, scaling: scaling,
                        into: out.baseAddress! + range.lowerBound * columns * width, firstRow: range.lowerBound)
                }
            }
        }
        let bits = largest.max()!
        guard bits <= 0x7F80_0000 else { return .nan }
        return rounded(Float(bitPattern: bits), to: scaling.target)
    }

    /// Dequantizes `rows` of a stack of `matrixRows × columns` matrices (rows counted through the
    /// stack) into `out`, which holds the rows from `firstRow` on; `scales` holds each matrix's grid.
    /// Returns the largest |fp32 product| as fp32 bits.
    static func dequantizeRows(
        codes: UnsafeRawBufferPointer, rows: Range<Int>, matrixRows: Int, columns: Int, scales: UnsafeBufferPointer<Float>,
        scaling: FP8Scaling, into out: UnsafeMutableRawPointer, firstRow: Int
    ) -> UInt32 {
        let grid = scaling.grid(rows: matrixRows, columns: columns)
        let width = scaling.target.bitWidth / 8
        let target = scaling.kernelTarget
        let source = codes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var largest: UInt32 = 0
        for row in rows {
            let scaleRow = (row / matrixRows) * grid.rows * grid.columns + (row % matrixRows) / scaling.blockRows * grid.columns
            var column = 0
            for g in 0..<grid.columns {
                let count = min(scaling.blockColumns, columns - column)
                let bits = nvfp4_fp8_e4m3_dequantize(
                    source + row * columns + column, count, scales[scaleRow + g], target, out + ((row - firstRow) * columns + column) * width)
                largest = max(largest, bits)
                column += count
            }
        }
        return largest
    }

    /// `value` rounded to `target` (nearest even) and widened back.
    static func rounded(_ value: Float, to target: DType) -> Float {
        switch target {
        case .bf16:
            let bits = value.bitPattern
            return BFloat16.toFloat(UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16))
        case .f16: return Float(Float16(value))
        default: return value
        }
    }
}
