/// The float8 e4m3fn format of NVFP4 block scales: 1 sign, 4 exponent (bias 7), 3 mantissa bits,
/// no infinities, NaN at `0x7F`/`0xFF`, largest finite 448.
public enum E4M3 {
    /// The largest finite value.
    public static let max: Float = 448
    /// The smallest normal value, 2^-6: torchao clamps block scales to it.
    public static let smallestNormal: Float = 0.015625

    /// Every code's value, NaN for `0x7F` and `0xFF`.
    public static let values: [Float] = (0..<256).map { decodeSlow(UInt8($0)) }

    /// The value of `code`.
    @inline(__always)
    public static func decode(_ code: UInt8) -> Float { values[Int(code)] }

    /// Whether `code` is NaN (`0x7F` or `0xFF`).
    public static func isNaN(_ code: UInt8) -> Bool { code & 0x7F == 0x7F }

    /// Rounds a value already clamped to [2^-6, 448] to the nearest e4m3 code, ties to even.
    ///
    /// Only normal codes `0x08`…`0x7E` can result, which is all torchao's clamped scales produce.
    @inline(__always)
    public static func encodeClampedNormal(_ value: Float) -> UInt8 {
        let bits = value.bitPattern
        // Round the 23-bit mantissa to 3 bits, ties to even; a carry moves into the exponent.
        let rounded = (bits &+ 0x7FFFF &+ ((bits >> 20) & 1)) >> 20
        // Rebias the exponent from 127 to 7: subtract (127 - 7) << 3.
        return UInt8(truncatingIfNeeded: rounded &- 960)
    }

    /// Rounds any finite or infinite value to e4m3 the way `torch.clamp(v, 2^-6, 448).to(float8_e4m3fn)` does.
    @inline(__always)
    public static func encodeClamped(_ value: Float) -> UInt8 {
        encodeClampedNormal(Swift.min(Swift.max(value, smallestNormal), max))
    }

    private static func decodeSlow(_ code: UInt8) -> Float {
        let sign: Float = code & 0x80 != 0 ? -1 : 1
        let exponent = Int((code >> 3) & 0x0F)
        let mantissa = Float(code & 0x07)
        if exponent == 15 && code & 0x07 == 7 { return .nan }
        if exponent == 0 { return sign * mantissa / 8 * 0.015625 }
        return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }
}

/// The 4-bit e2m1 format of NVFP4 elements: codes 0–7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 is
/// the sign (code 8 is −0).
public enum E2M1 {
    /// The largest magnitude.
    public static let max: Float = 6

    /// Every code's value (code 8 is −0.0).
    public static let values: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]

    /// Rounds to the nearest e2m1 code, ties to even, saturating at ±6; the sign bit of `value` is
    /// kept, so −0 and small negatives give code 8 (torchao's `_f32_to_floatx_unpacked`).
    @inline(__always)
    public static func encode(_ value: Float) -> UInt8 {
        let a = value.magnitude
        var code: UInt8 = 0
        if a > 0.25 { code += 1 }
        if a >= 0.75 { code += 1 }
        if a > 1.25 { code += 1 }
        if a >= 1.75 { code += 1 }
        if a > 2.5 { code += 1 }
        if a >= 3.5 { code += 1 }
        if a > 5 { code += 1 }
        return code | UInt8(truncatingIfNeeded: value.bitPattern >> 28) & 0x8
    }
}

/// bfloat16 conversions.
public enum BFloat16 {
    /// The exact float value of bf16 `bits`.
    @inline(__always)
    public static func toFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// Rounds to nearest even, as `tensor.to(torch.bfloat16)`; NaN stays a quiet NaN with its sign.
    @inline(__always)
    public static func fromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }
}
