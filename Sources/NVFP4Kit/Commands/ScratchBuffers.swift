/// The work buffers of a quantization run (block scales; packed bytes computed only for their
/// scales), reused from tensor to tensor.
///
/// Allocating them per tensor let glibc's heap grow by hundreds of MiB over a model (its mmap
/// threshold rises after the first large free, and differently sized blocks then fragment the
/// heap); one buffer each, grown only when a tensor needs more, keeps anonymous memory at the
/// largest tensor's needs.
final class ScratchBuffers {
    private var scaleBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var packedBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init() {}

    deinit {
        scaleBuffer.deallocate()
        packedBuffer.deallocate()
    }

    /// At least `byteCount` bytes for packed output that is computed and thrown away (contents undefined).
    func packed(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if packedBuffer.count < byteCount {
            packedBuffer.deallocate()
            packedBuffer = .allocate(byteCount: byteCount, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: packedBuffer[0..<byteCount])
    }

    /// Exactly `byteCount` zeroed bytes for block scales (swizzled padding must read as zero).
    func scales(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if scaleBuffer.count < byteCount {
            scaleBuffer.deallocate()
            scaleBuffer = .allocate(byteCount: byteCount, alignment: 64)
        }
        let result = UnsafeMutableRawBufferPointer(rebasing: scaleBuffer[0..<byteCount])
        result.initializeMemory(as: UInt8.self, repeating: 0)
        return result
    }
}
