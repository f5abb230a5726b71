/// A safetensors element type, spelled exactly as the format spells it.
///
/// The list and the bit widths follow the reference implementation (`safetensors/src/tensor.rs`);
/// any other spelling, including case variants such as `f32` or `F8_E4M3FN`, is rejected.
public enum DType: String, CaseIterable, Sendable {
    case bool = "BOOL"
    case u8 = "U8", i8 = "I8", u16 = "U16", i16 = "I16", u32 = "U32", i32 = "I32", u64 = "U64", i64 = "I64"
    case f16 = "F16", bf16 = "BF16", f32 = "F32", f64 = "F64", c64 = "C64"
    case f8E4M3 = "F8_E4M3", f8E5M2 = "F8_E5M2", f8E8M0 = "F8_E8M0"
    case f8E4M3FNUZ = "F8_E4M3FNUZ", f8E5M2FNUZ = "F8_E5M2FNUZ"
    case f6E2M3 = "F6_E2M3", f6E3M2 = "F6_E3M2"
    case f4 = "F4"

    /// Bits per element.
    public var bitWidth: Int {
        switch self {
        case .f4: return 4
        case .f6E2M3, .f6E3M2: return 6
        case .bool, .u8, .i8, .f8E4M3, .f8E5M2, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ: return 8
        case .u16, .i16, .f16, .bf16: return 16
        case .u32, .i32, .f32: return 32
        case .u64, .i64, .f64, .c64: return 64
        }
    }

    /// Whether the NVFP4 codec accepts this dtype as quantization input.
    public var isQuantizable: Bool { self == .bf16 || self == .f32 || self == .f16 }

    /// Whether this is one of the 8-bit float dtypes (FP8 weights and their E8M0 scales).
    public var isEightBitFloat: Bool { [.f8E4M3, .f8E5M2, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ].contains(self) }

    /// The lowercase name users type (`bf16`, `f32`).
    public var shortName: String { rawValue.lowercased() }
}
