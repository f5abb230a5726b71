import Glibc

/// One-level or two-level NVFP4 scaling.
public enum ScalingMode: String, Sendable, CaseIterable {
    /// A per-tensor fp32 scale (amax / 2688) over e4m3 block scales: torchao's default
    /// (`use_dynamic_per_tensor_scale=True`) and what the engines load.
    case twoLevel = "two-level"
    /// e4m3 block scales alone (`use_dynamic_per_tensor_scale=False`, `--no-global-scale`).
    case singleLevel = "single-level"
}

/// Where torchao's two scalar divisions are emulated: they round differently on CPU and CUDA.
public enum DivisionNumerics: String, Sendable, CaseIterable {
    /// CUDA divides a tensor by a Python scalar as `a * RN(1/b)`: what torchao users get on a GPU.
    case cuda
    /// Correctly rounded IEEE division, as torchao on a CPU.
    case cpu

    /// `value / divisor` as torch computes it on this device for a Python-scalar divisor.
    @inline(__always)
    func divide(_ value: Float, by divisor: Float, reciprocal: Float) -> Float {
        self == .cpu ? value / divisor : value * reciprocal
    }
}

/// Why a weight cannot be quantized.
public enum WeightError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A NaN or infinity at this flat (row-major) index.
    case nonFinite(tensor: String, index: Int, row: Int, column: Int)
    /// Two-level scaling needs a non-zero amax.
    case allZero(tensor: String)
    /// amax is so small that 1/(amax/2688) overflows.
    case amaxTooSmall(tensor: String, amax: Float)
    /// The shape or dtype does not suit NVFP4.
    case unsupportedShape(tensor: String, shape: [Int], reason: String)

    public var description: String {
        switch self {
        case .nonFinite(let t, let i, let r, let c):
            return "tensor \"\(t)\": non-finite value (NaN or Inf) at index \(i) (row \(r), column \(c))"
        case .allZero(let t):
            return "tensor \"\(t)\": all values are zero, so two-level scaling has no per-tensor scale; use --no-global-scale or --exclude it"
        case .amaxTooSmall(let t, let amax):
            return "tensor \"\(t)\": max |w| = \(amax) is too small for two-level scaling; use --no-global-scale or --exclude it"
        case .unsupportedShape(let t, let shape, let reason):
            return "tensor \"\(t)\" with shape \(shape): \(reason)"
        }
    }
}

/// Error statistics of a quantized tensor against its source, accumulated in `Double`.
///
/// ``NVFP4Codec/quantize(_:rows:packed:scales:layout:error:)`` forms x², (x − x̂)² and |x − x̂| in
/// `Float` (x̂ = RN(e2m1 × factor) exactly as dequantization gives it), sums each SIMD lane in
/// `Float` over one group of 16 blocks, then in `Double`. The sums can therefore differ from a
/// per-element `Double` accumulation in the last few significant digits (≈1e-8 relative);
/// the maximum is exact. They are reported numbers, never bytes.
public struct QuantizationError: Sendable, Equatable {
    /// Σ x².
    public var signalSquareSum: Double = 0
    /// Σ (x − x̂)².
    public var errorSquareSum: Double = 0
    /// max |x − x̂|.
    public var maxAbsoluteError: Double = 0
    /// Number of elements.
    public var count: Int = 0

    public init() {}

    /// √(Σ(x−x̂)² / Σx²); 0 for an all-zero source that was reproduced exactly.
    public var relativeRMSE: Double {
        if signalSquareSum == 0 { return errorSquareSum == 0 ? 0 : .infinity }
        return (errorSquareSum / signalSquareSum).squareRoot()
    }

    /// 10·log10(Σx² / Σ(x−x̂)²) in dB; infinite when there is no error.
    public var sqnrDB: Double {
        if errorSquareSum == 0 { return .infinity }
        if signalSquareSum == 0 { return -.infinity }
        return 10 * log10(signalSquareSum / errorSquareSum)
    }

    /// Adds another part's statistics (combine parts in a fixed order for reproducible sums).
    public mutating func merge(_ other: QuantizationError) {
        signalSquareSum += other.signalSquareSum
        errorSquareSum += other.errorSquareSum
        maxAbsoluteError = Swift.max(maxAbsoluteError, other.maxAbsoluteError)
        count += other.count
    }

    /// Accumulates one pair of source and reconstructed values.
    @inline(__always)
    public mutating func add(original: Float, reconstructed: Float) {
        let x = Double(original)
        let d = x - Double(reconstructed)
        signalSquareSum += x * x
        errorSquareSum += d * d
        maxAbsoluteError = Swift.max(maxAbsoluteError, d.magnitude)
        count += 1
    }
}

/// The per-tensor part of NVFP4 scaling: everything derived from the tensor's amax.
public struct TensorScale: Sendable, Equatable {
    /// `max |w|` over the tensor.
    public var amax: Float
    /// amax / 2688 as torchao rounds it; `nil` in single-level mode.
    public var perTensorScale: Float?

    /// Derives the per-tensor scale from `amax`.
    ///
    /// - Throws: ``WeightError`` when two-level scaling cannot represent the tensor.
    public init(amax: Float, mode: ScalingMode, numerics: DivisionNumerics, tensor: String) throws(WeightError) {
        self.amax = amax
        guard mode == .twoLevel else {
            perTensorScale = nil
            return
        }
        if amax == 0 { throw .allZero(tensor: tensor) }
        let pts = numerics.divide(amax, by: NVFP4Codec.perTensorDivisor, reciprocal: NVFP4Codec.perTensorReciprocal)
        guard pts > 0, (1 / pts).isFinite else { throw .amaxTooSmall(tensor: tensor, amax: amax) }
        perTensorScale = pts
    }

    /// Wraps a known per-tensor scale (for dequantization).
    public init(amax: Float, perTensorScale: Float?) {
        self.amax = amax
        self.perTensorScale = perTensorScale
    }
}

/// The NVFP4 codec, bit-exact with torchao ≥ 0.18's `nvfp4_quantize` and `NVFP4Tensor.dequantize`.
///
/// Blocks are 16 consecutive elements of a row. Each block gets an e4m3 scale
/// `e4m3(clamp(blockAmax/6 / pts, 2^-6, 448))`; elements are multiplied by the rounded
/// reciprocal `RN(RN(1/pts) / scale)` and rounded to e2m1. Even elements go in low nibbles.
public struct NVFP4Codec: Sendable {
    /// Elements per block scale.
    public static let blockSize = 16
    /// 448 × 6: the per-tensor scale is amax / 2688.
    public static let perTensorDivisor: Float = 2688
    /// RN32(1/2688) = 0x39C30C31, the CUDA reciprocal.
    public static let perTensorReciprocal = Float(bitPattern: 0x39C3_0C31)
    /// RN32(1/6) = 0x3E2AAAAB, the CUDA reciprocal.
    public static let sixReciprocal = Float(bitPattern: 0x3E2A_AAAB)

    public var numerics: DivisionNumerics
    public var scale: TensorScale
    /// RN(1/pts), computed once as torchao does.
    private let reciprocalPerTensorScale: Float?

    public init(scale: TensorScale, numerics: DivisionNumerics) {
        self.scale = scale
        self.numerics = numerics
        reciprocalPerTensorScale = scale.perTensorScale.map { 1 / $0 }
    }

    /// The fp32 factor an e4m3 scale `code` dequantizes with: `RN(pts × s)`, or `s` alone.
    @inline(__always)
    public func dequantizationFactor(_ code: UInt8) -> Float {
        let s = E4M3.decode(code)
        if let pts = scale.perTensorScale { return pts * s }
        return s
    }

    /// Quantizes rows of `matrix`.
    ///
    /// - Parameters:
    ///   - matrix: The source; `columns` must be a multiple of 16.
    ///   - rows: The rows to quantize.
    ///   - packed: Receives `rows.count × columns/2` bytes, row-major from `rows.lowerBound`.
    ///   - scales: Receives the e4m3 scales at `layout.offset(row:block:blocks:)` for absolute rows.
    ///   - layout: The scale layout.
    ///   - error: Accumulates the reconstruction error.
    public func quantize(
        _ matrix: DenseMatrix, rows: Range<Int>, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, error: inout QuantizationError
    ) {
        let parameters = NVFP4Kernel.ScaleParameters(
            twoLevel: scale.perTensorScale != nil, cpuDivision: numerics == .cpu,
            pts: scale.perTensorScale ?? 1, rpts: reciprocalPerTensorScale ?? 1)
        NVFP4Kernel.quantize(
            matrix, rows: rows, packed: packed, scales: scales, layout: layout, parameters: parameters, error: &error)
    }
}
