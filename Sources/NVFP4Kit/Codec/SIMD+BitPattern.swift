extension SIMD16 where Scalar == Float {
    /// The lanes' IEEE bit patterns.
    @inline(__always)
    var bitPattern: SIMD16<UInt32> { unsafeBitCast(self, to: SIMD16<UInt32>.self) }

    /// Floats with the given IEEE bit patterns.
    @inline(__always)
    init(bitPattern: SIMD16<UInt32>) { self = unsafeBitCast(bitPattern, to: SIMD16<Float>.self) }
}
