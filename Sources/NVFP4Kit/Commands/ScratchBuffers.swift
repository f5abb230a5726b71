/// The two work buffers of a quantization run, reused from tensor to tensor.
///
/// Allocating them per tensor let glibc's heap grow by hundreds of MiB over a model (its mmap
/// threshold rises after the first large free, and differently sized blocks then fragment the
/// heap); one buffer each, grown only when a tensor needs more, keeps anonymous memory at the
/// largest tensor's needs.
final class ScratchBuffers {
    private var waveBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var secondWaveBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var scaleBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init() {}

    deinit {
        waveBuffer.deallocate()
        secondWaveBuffer.deallocate()
        scaleBuffer.deallocate()
    }

    /// At least `byteCount` bytes for packed output (contents undefined).
    func wave(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if waveBuffer.count < byteCount {
            waveBuffer.deallocate()
            waveBuffer = .allocate(byteCount: byteCount, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: waveBuffer[0..<byteCount])
    }

    /// A second packed-output buffer of at least `byteCount` bytes, distinct from ``wave(byteCount:)``'s.
    func secondWave(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if secondWaveBuffer.count < byteCount {
            secondWaveBuffer.deallocate()
            secondWaveBuffer = .allocate(byteCount: byteCount, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: secondWaveBuffer[0..<byteCount])
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
