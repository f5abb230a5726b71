import CNVFP4Kernel

/// The inner loops of ``NVFP4Codec/quantize(_:rows:packed:scales:layout:error:)``.
///
/// The arithmetic runs in the C target `CNVFP4Kernel` (`nvfp4_quantize_groups`), in groups of 16
/// blocks (256 elements): the 16 block maxima by a transpose-fold, the 16 e4m3 scales as one
/// vector, then e2m1 rounding by a magic-number addition, without per-element branches. It is C
/// because one portable build must use the CPU's full vector width: the C target carries
/// AVX-512 and AVX2 copies picked at load time, while Swift's SIMD types compile to the build's
/// baseline (SSE2 on x86-64) and cannot be multiversioned (measurements in docs/speed.md).
///
/// This wrapper maps a chunk of rows (one flat run of blocks in a row-major matrix and in the
/// packed output) onto whole groups, places the scale codes in the layout, and handles the last
/// partial group and f16 input through a zero-padded fp32 buffer.
enum NVFP4Kernel {
    /// Blocks per group.
    static let groupBlocks = Int(NVFP4_GROUP_BLOCKS)
    /// Elements per group.
    static let groupElements = groupBlocks * NVFP4Codec.blockSize
    /// Groups per call when scale codes go through a scratch buffer (swizzled layout).
    static let groupsPerSlice = 64

    /// Per-call constants of the scale computation.
    struct ScaleParameters {
        /// Two-level scaling (`pts` and `rpts` are used).
        var twoLevel: Bool
        /// CPU numerics: `blockAmax / 6` is a true division.
        var cpuDivision: Bool
        var pts: Float
        var rpts: Float

        var c: nvfp4_scale_params {
            nvfp4_scale_params(two_level: twoLevel ? 1 : 0, cpu_division: cpuDivision ? 1 : 0, pts: pts, rpts: rpts)
        }
    }

    /// The instruction set the C kernel runs with on this machine ("avx512", "avx2" or "baseline").
    static var instructionSet: String { String(cString: nvfp4_kernel_isa()) }

    /// Quantizes `rows` of `matrix` (see ``NVFP4Codec/quantize(_:rows:packed:scales:layout:error:)``).
    static func quantize(
        _ matrix: DenseMatrix, rows: Range<Int>, packed: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableRawBufferPointer, layout: ScaleLayout, parameters: ScaleParameters,
        error: inout QuantizationError
    ) {
        let blocksPerRow = matrix.columns / NVFP4Codec.blockSize
        let totalBlocks = rows.count * blocksPerRow
        guard totalBlocks > 0 else { return }
        precondition(
            rows.lowerBound >= 0 && rows.upperBound <= matrix.rows && packed.count >= totalBlocks * 8
                && scales.count >= layout.storedByteCount(rows: rows.upperBound, blocks: blocksPerRow),
            "quantize: output buffers too small")
        let firstBlock = rows.lowerBound * blocksPerRow
        let params = parameters.c
        var lanes = nvfp4_error_lanes()
        let out = packed.baseAddress!
        // Scale codes in block order; placed by `place` (row-major: the flat block index is the offset).
        let codeScratch = UnsafeMutablePointer<UInt8>.allocate(capacity: groupsPerSlice * groupBlocks)
        defer { codeScratch.deallocate() }
        func place(_ codes: UnsafePointer<UInt8>, count: Int, fromBlock b: Int) {
            var row = (firstBlock + b) / blocksPerRow
            var column = (firstBlock + b) % blocksPerRow
            var i = 0
            while i < count {
                let n = Swift.min(blocksPerRow - column, count - i)
                layout.storeRow(codes + i, count: n, row: row, firstBlock: column, blocks: blocksPerRow, into: scales.baseAddress!)
                i += n
                row += 1
                column = 0
            }
        }

        var b = 0  // blocks done
        if matrix.dtype == .bf16 || matrix.dtype == .f32 {
            let elementBytes = matrix.dtype.bitWidth / 8
            let source = matrix.bytes.baseAddress! + firstBlock * NVFP4Codec.blockSize * elementBytes
            let fullGroups = totalBlocks / groupBlocks
            if layout == .rowMajor {
                let codes = scales.baseAddress!.assumingMemoryBound(to: UInt8.self) + firstBlock
                nvfp4_quantize_groups(source, Int32(elementBytes), fullGroups, params, out.assumingMemoryBound(to: UInt8.self), codes, &lanes)
                b = fullGroups * groupBlocks
            } else {
                while b + groupBlocks <= totalBlocks {
                    let groups = Swift.min(groupsPerSlice, (totalBlocks - b) / groupBlocks)
                    nvfp4_quantize_groups(
                        source + b * NVFP4Codec.blockSize * elementBytes, Int32(elementBytes), groups, params,
                        (out + b * 8).assumingMemoryBound(to: UInt8.self), codeScratch, &lanes)
                    place(codeScratch, count: groups * groupBlocks, fromBlock: b)
                    b += groups * groupBlocks
                }
            }
        }
        if b < totalBlocks {
            // f16 input and the last partial group: widen into a zero-padded fp32 group. Padding
            // blocks quantize to zero (adding nothing to the sums) and are not stored.
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: groupElements)
            defer { buffer.deallocate() }
            var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0),
                         UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            while b < totalBlocks {
                let valid = Swift.min(groupBlocks, totalBlocks - b)
                let base = (firstBlock + b) * NVFP4Codec.blockSize
                for i in 0..<groupElements {
                    buffer[i] = i < valid * NVFP4Codec.blockSize ? matrix.element(base + i) : 0
                }
                withUnsafeMutableBytes(of: &bytes) { group in
                    let groupOut = group.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    nvfp4_quantize_groups(buffer, 4, 1, params, groupOut, codeScratch, &lanes)
                    (out + b * 8).copyMemory(from: groupOut, byteCount: valid * 8)
                }
                place(codeScratch, count: valid, fromBlock: b)
                b += valid
            }
        }
        error.merge(QuantizationError(lanes: lanes, count: totalBlocks * NVFP4Codec.blockSize))
    }

    /// Measures `rows` of the original `matrix` against their NVFP4 encoding (`packed`: the whole
    /// tensor's packed bytes; `scales`: its stored block scales in `layout`), accumulating into
    /// `error` exactly as ``quantize(_:rows:packed:scales:layout:parameters:error:)`` does, so a file
    /// we wrote gives back the error sums recorded while quantizing it.
    static func compare(
        _ matrix: DenseMatrix, rows: Range<Int>, packed: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer,
        layout: ScaleLayout, perTensorScale: Float?, error: inout QuantizationError
    ) {
        let blocksPerRow = matrix.columns / NVFP4Codec.blockSize
        let totalBlocks = rows.count * blocksPerRow
        guard totalBlocks > 0 else { return }
        precondition(
            rows.lowerBound >= 0 && rows.upperBound <= matrix.rows && packed.count >= rows.upperBound * blocksPerRow * 8
                && scales.count >= layout.storedByteCount(rows: rows.upperBound, blocks: blocksPerRow),
            "compare: buffers too small")
        let firstBlock = rows.lowerBound * blocksPerRow
        let params = nvfp4_scale_params(two_level: perTensorScale == nil ? 0 : 1, cpu_division: 0, pts: perTensorScale ?? 1, rpts: 1)
        var lanes = nvfp4_error_lanes()
        // The chunk's codes in block order, padded to whole groups with code 0 (a zero factor).
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: totalBlocks + groupBlocks)
        defer { codes.deallocate() }
        codes.initialize(repeating: 0, count: totalBlocks + groupBlocks)
        for row in rows {
            layout.loadRow(
                codes + (row - rows.lowerBound) * blocksPerRow, count: blocksPerRow, row: row, firstBlock: 0,
                blocks: blocksPerRow, from: scales.baseAddress!)
        }
        let packedBase = packed.baseAddress!.assumingMemoryBound(to: UInt8.self) + firstBlock * 8
        var b = 0
        if matrix.dtype == .bf16 || matrix.dtype == .f32 {
            let elementBytes = matrix.dtype.bitWidth / 8
            let fullGroups = totalBlocks / groupBlocks
            nvfp4_compare_groups(
                matrix.bytes.baseAddress! + firstBlock * NVFP4Codec.blockSize * elementBytes, Int32(elementBytes), fullGroups,
                packedBase, codes, params, &lanes)
            b = fullGroups * groupBlocks
        }
        if b < totalBlocks {
            // f16 input and the last partial group: zero-padded fp32 values and packed bytes.
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: groupElements)
            defer { buffer.deallocate() }
            let groupPacked = UnsafeMutablePointer<UInt8>.allocate(capacity: groupElements / 2)
            defer { groupPacked.deallocate() }
            while b < totalBlocks {
                let valid = Swift.min(groupBlocks, totalBlocks - b)
                let base = (firstBlock + b) * NVFP4Codec.blockSize
                for i in 0..<groupElements {
                    buffer[i] = i < valid * NVFP4Codec.blockSize ? matrix.element(base + i) : 0
                }
                groupPacked.initialize(repeating: 0, count: groupElements / 2)
                groupPacked.update(from: packedBase + b * 8, count: valid * 8)
                let groupCodes = UnsafeMutablePointer<UInt8>.allocate(capacity: groupBlocks)
                groupCodes.initialize(repeating: 0, count: groupBlocks)
                groupCodes.update(from: codes + b, count: valid)
                nvfp4_compare_groups(buffer, 4, 1, groupPacked, groupCodes, params, &lanes)
                groupCodes.deallocate()
                b += valid
            }
        }
        error.merge(QuantizationError(lanes: lanes, count: totalBlocks * NVFP4Codec.blockSize))
    }
}

extension QuantizationError {
    /// The sums of the C kernel's lanes, in lane order.
    init(lanes: nvfp4_error_lanes, count: Int) {
        self.init()
        withUnsafeBytes(of: lanes.signal) { s in
            for v in s.bindMemory(to: Double.self) { signalSquareSum += v }
        }
        withUnsafeBytes(of: lanes.error) { s in
            for v in s.bindMemory(to: Double.self) { errorSquareSum += v }
        }
        withUnsafeBytes(of: lanes.max_abs) { s in
            for v in s.bindMemory(to: Float.self) { maxAbsoluteError = Swift.max(maxAbsoluteError, Double(v)) }
        }
        self.count = count
    }
}
