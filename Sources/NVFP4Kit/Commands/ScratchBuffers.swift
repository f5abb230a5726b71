/// The block-scale work buffer of a quantization run, reused from tensor to tensor.
///
/// Allocating them per tensor let glibc's heap grow by hundreds of MiB over a model (its mmap
/// threshold rises after the first large free, and differently sized blocks then fragment the
/// heap); one buffer, grown only when a tensor needs more, keeps anonymous memory at the
/// largest tensor's needs.
final class ScratchBuffers {
    private var scaleBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init() {}

    deinit {
        scaleBuffer.deallocate()
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
