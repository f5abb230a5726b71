/// Per-tensor scale inputs that come from outside one tensor: a fused group's shared amax and the
/// calibrated activation amax, keyed by the 2-D weight's name (an expert slice's own name).
/// ``QuantizePlan`` fills it.
public struct ScalePlan: Sendable {
    /// Tensor name → amax its per-tensor scale is derived from (the max over its fused group).
    public var sharedAmax: [String: Float] = [:]
    /// Tensor name → calibrated max |input| of its module.
    public var inputAmax: [String: Float] = [:]

    public init() {}

    /// The scales weight `name` is written with.
    ///
    /// - Throws: ``FileError`` when the calibrated amax cannot give a finite, positive scale.
    public func scales(for name: String, codec: NVFP4Codec, numerics: DivisionNumerics, path: String) throws(FileError) -> WeightScales {
        guard let amax = inputAmax[name] else { return WeightScales(weight: codec.scale.perTensorScale, input: nil) }
        guard amax.isFinite, amax > 0 else {
            throw FileError(path: path, cause: CalibrationError.invalidAmax(module: moduleName(name), amax: amax))
        }
        let scale = numerics.divide(amax, by: NVFP4Codec.perTensorDivisor, reciprocal: NVFP4Codec.perTensorReciprocal)
        guard scale > 0, (1 / scale).isFinite else {
            throw FileError(path: path, cause: CalibrationError.invalidAmax(module: moduleName(name), amax: amax))
        }
        return WeightScales(weight: codec.scale.perTensorScale, input: scale)
    }
}

/// Why calibration data cannot be used.
public enum CalibrationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An amax that is zero, negative or not finite.
    case invalidAmax(module: String, amax: Float)
    /// A quantized module has no entry.
    case missing(module: String)
    /// The file is not a JSON object of numbers.
    case malformed(reason: String)

    public var description: String {
        switch self {
        case .invalidAmax(let m, let a):
            return "calibrated max |input| of module \"\(m)\" is \(a); it must be finite and greater than 0"
        case .missing(let m):
            return "module \"\(m)\" is quantized but has no calibrated max |input|; add it to the calibration file or --exclude it"
        case .malformed(let r):
            return "calibration file: \(r)"
        }
    }
}
