import CNVFP4Kernel

/// A read-only view of a row-major bf16, f16 or f32 matrix in file bytes (any alignment).
public struct DenseMatrix {
    /// The raw little-endian element bytes.
    public var bytes: UnsafeRawBufferPointer
    public var dtype: DType
    public var rows: Int
    public var columns: Int

    /// Wraps `bytes`; `dtype` must be bf16, f16 or f32 and the byte count must match.
    public init(bytes: UnsafeRawBufferPointer, dtype: DType, rows: Int, columns: Int) {
        precondition(dtype.isQuantizable && bytes.count == rows * columns * dtype.bitWidth / 8)
        self.bytes = bytes
        self.dtype = dtype
        self.rows = rows
        self.columns = columns
    }

    /// The matrix made of `range` of this one's rows (a view of the same bytes).
    public func rows(_ range: Range<Int>) -> DenseMatrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        let rowBytes = columns * dtype.bitWidth / 8
        return DenseMatrix(
            bytes: UnsafeRawBufferPointer(rebasing: bytes[(range.lowerBound * rowBytes)..<(range.upperBound * rowBytes)]),
            dtype: dtype, rows: range.count, columns: columns)
    }

    /// Element `index` (row-major) widened exactly to `Float`.
    @inline(__always)
    public func element(_ index: Int) -> Float {
        switch dtype {
        case .bf16: return BFloat16.toFloat(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)))
        case .f16: return Float(Float16(bitPattern: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))))
        default: return Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
        }
    }

    /// The 16 elements starting at `index`, widened exactly to `Float`.
    @inline(__always)
    public func block(at index: Int) -> SIMD16<Float> {
        switch dtype {
        case .bf16:
            let raw = bytes.loadUnaligned(fromByteOffset: index * 2, as: SIMD16<UInt16>.self)
            return SIMD16<Float>(bitPattern: SIMD16<UInt32>(truncatingIfNeeded: raw) &<< 16)
        case .f32:
            return SIMD16<Float>(bitPattern: bytes.loadUnaligned(fromByteOffset: index * 4, as: SIMD16<UInt32>.self))
        default:
            var out = SIMD16<Float>()
            for i in 0..<16 { out[i] = element(index + i) }
            return out
        }
    }

    /// The first element that is NaN or infinite, or `nil`, together with the largest magnitude.
    ///
    /// Magnitudes are compared as integer bit patterns, which orders non-negative floats exactly.
    public func magnitudeMaximum() -> (amax: Float, firstNonFinite: Int?) {
        let count = rows * columns
        var maxBits: UInt32 = 0
        switch dtype {
        case .bf16:
            maxBits = UInt32(nvfp4_bf16_magnitude_max(bytes.baseAddress, count)) << 16
        case .f32:
            maxBits = nvfp4_f32_magnitude_max(bytes.baseAddress, count)
        default:
            for i in 0..<count { maxBits = Swift.max(maxBits, element(i).magnitude.bitPattern) }
        }
        let amax = Float(bitPattern: maxBits)
        guard !amax.isFinite else { return (amax, nil) }
        let bad = (0..<count).first { !element($0).isFinite }
        return (amax, bad)
    }
}
