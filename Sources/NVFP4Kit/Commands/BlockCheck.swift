/// How a quantize run chose its block scales, as its manifest records it: what `verify` re-runs
/// to check every stored block exactly, so that one wrong scale byte or nibble fails whatever the
/// tolerance.
public struct BlockRule: Sendable, Equatable {
    /// The block-scale method (`rtn`, or the `mse` search).
    public var method: QuantizationMethod
    /// The division numerics the run reproduced.
    public var numerics: DivisionNumerics
    /// Codes searched on each side of the RTN code (`mse`).
    public var searchRadius: Int

    public init(method: QuantizationMethod, numerics: DivisionNumerics, searchRadius: Int = ScaleSearch.defaultRadius) {
        self.method = method
        self.numerics = numerics
        self.searchRadius = searchRadius
    }

    /// The rule a manifest's `options` describe, or `nil` when the blocks cannot be recomputed
    /// from the original alone (an importance-weighted search needs its statistics file) or the
    /// options are not ones nvfp4 writes.
    public init?(manifestOptions options: JSONValue?) {
        guard let options,
            let method = QuantizationMethod(manifestOptions: options),
            let numerics = options["numerics"]?.stringValue.flatMap(DivisionNumerics.init(rawValue:))
        else { return nil }
        // Error feedback depends on the calibration statistics, which the manifest only names:
        // such outputs are checked against the tolerance, not block by block.
        guard method != .gptq else { return nil }
        var radius = ScaleSearch.defaultRadius
        if method == .mse {
            guard options["importance"] == nil || options["importance"] == .null,
                let r = options["search_radius"]?.unsignedValue, r <= 126
            else { return nil }
            radius = Int(r)
        }
        self.init(method: method, numerics: numerics, searchRadius: radius)
    }
}

/// The first block of a stored matrix that differs from re-quantizing its original.
public struct BlockMismatch: Sendable, Equatable {
    /// Blocks that differ (scale code or any of its 16 codes).
    public var count: Int
    public var row: Int
    public var block: Int
    /// The stored and the recomputed scale code of that block.
    public var storedScale: UInt8
    public var expectedScale: UInt8
    /// Whether the block's packed e2m1 codes differ.
    public var codesDiffer: Bool

    /// `3 blocks differ from rtn re-quantization; first at row 5, block 2: scale 0x00 (expected 0x3c)`.
    public func description(method: QuantizationMethod) -> String {
        let what = storedScale != expectedScale
            ? "scale code 0x\(hex(storedScale)) (expected 0x\(hex(expectedScale)))" + (codesDiffer ? " and its e2m1 codes" : "")
            : "its e2m1 codes (scale code 0x\(hex(storedScale)) as expected)"
        return "\(count) \(count == 1 ? "block differs" : "blocks differ") from re-quantizing the original (\(method.rawValue), the stored per-tensor scale); first at row \(row), block \(block): \(what)"
    }

    private func hex(_ b: UInt8) -> String { (b < 16 ? "0" : "") + String(b, radix: 16) }
}

/// Re-quantizes an original matrix with the stored per-tensor scale and the manifest's method and
/// compares every block's scale code and e2m1 codes with the stored ones. The codec is
/// deterministic given the per-tensor scale, so for nvfp4's own output (any layout, fused groups
/// included: their shared scale is the stored one) every block must match exactly.
public enum BlockCheck {
    /// The first differing block and how many differ, or `nil` when every block matches.
    ///
    /// - Parameters:
    ///   - matrix: The original `[N, K]` rows the stored matrix was made from.
    ///   - packed: The stored `[N, K/2]` e2m1 bytes.
    ///   - scales: The stored block scales in `layout`.
    ///   - perTensorScales: Candidate per-tensor scales (`amax / 2688`), most likely first: a layout
    ///     that stores `2688 / amax` loses the last bit of it, so its neighbours that store the same
    ///     value are tried too; the first candidate with no mismatch wins. `[nil]` for single-level.
    ///   - rule: How the blocks were chosen.
    ///   - threads: Worker threads; the result does not depend on it.
    public static func firstMismatch(
        _ matrix: DenseMatrix, packed: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, layout: ScaleLayout,
        perTensorScales: [Float?], rule: BlockRule, threads: Int
    ) -> BlockMismatch? {
        var best: BlockMismatch?
        for pts in perTensorScales {
            guard let found = mismatch(matrix, packed: packed, scales: scales, layout: layout, pts: pts, rule: rule, threads: threads) else {
                return nil
            }
            if best == nil || found.count < best!.count { best = found }
        }
        return best
    }

    /// Rows per re-quantized chunk: one swizzle band, so a chunk's scales are a contiguous slice.
    static let chunkRows = 128

    private static func mismatch(
        _ matrix: DenseMatrix, packed: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, layout: ScaleLayout,
        pts: Float?, rule: BlockRule, threads: Int
    ) -> BlockMismatch? {
        let blocks = matrix.columns / NVFP4Codec.blockSize
        guard matrix.rows > 0, blocks > 0 else { return nil }
        let codec = NVFP4Codec(scale: TensorScale(amax: 0, perTensorScale: pts), numerics: rule.numerics)
        let chunks = (matrix.rows + chunkRows - 1) / chunkRows
        var results = [BlockMismatch?](repeating: nil, count: chunks)
        results.withUnsafeMutableBufferPointer { out in
            let out = out
            ParallelLoop.run(iterations: chunks, threads: threads) { chunk in
                let rows = (chunk * chunkRows)..<min(matrix.rows, (chunk + 1) * chunkRows)
                out[chunk] = compareChunk(matrix.rows(rows), firstRow: rows.lowerBound, packed: packed, scales: scales, layout: layout, codec: codec, rule: rule)
            }
        }
        var total: BlockMismatch?
        for case let found? in results {
            if total == nil { total = found } else { total!.count += found.count }
        }
        return total
    }

    /// Re-quantizes one chunk (its rows numbered from 0) and compares it with stored rows `firstRow…`.
    private static func compareChunk(
        _ rows: DenseMatrix, firstRow: Int, packed: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, layout: ScaleLayout,
        codec: NVFP4Codec, rule: BlockRule
    ) -> BlockMismatch? {
        let blocks = rows.columns / NVFP4Codec.blockSize
        let rowBytes = rows.columns / 2
        let expectedPacked = UnsafeMutableRawBufferPointer.allocate(byteCount: rows.rows * rowBytes, alignment: 64)
        let expectedScales = UnsafeMutableRawBufferPointer.allocate(byteCount: layout.storedByteCount(rows: rows.rows, blocks: blocks), alignment: 64)
        defer { expectedPacked.deallocate(); expectedScales.deallocate() }
        expectedScales.initializeMemory(as: UInt8.self, repeating: 0)
        var ignored = QuantizationError()
        switch rule.method {
        case .rtn:
            codec.quantize(rows, rows: 0..<rows.rows, packed: expectedPacked, scales: expectedScales, layout: layout, error: &ignored)
        case .mse:
            codec.quantize(
                rows, rows: 0..<rows.rows, packed: expectedPacked, scales: expectedScales, layout: layout,
                search: ScaleSearch(radius: rule.searchRadius), error: &ignored)
        case .gptq:
            preconditionFailure("a gptq output has no block rule (BlockRule(manifestOptions:) returns nil)")
        }
        var found: BlockMismatch?
        for r in 0..<rows.rows {
            let row = firstRow + r
            for b in 0..<blocks {
                let stored = scales[layout.offset(row: row, block: b, blocks: blocks)]
                let expected = expectedScales[layout.offset(row: r, block: b, blocks: blocks)]
                let at = row * rowBytes + b * 8
                let codesDiffer = !UnsafeRawBufferPointer(rebasing: packed[at..<(at + 8)])
                    .elementsEqual(UnsafeRawBufferPointer(rebasing: expectedPacked[(r * rowBytes + b * 8)..<(r * rowBytes + b * 8 + 8)]))
                guard stored != expected || codesDiffer else { continue }
                if found == nil {
                    found = BlockMismatch(count: 0, row: row, block: b, storedScale: stored, expectedScale: expected, codesDiffer: codesDiffer)
                }
                found!.count += 1
            }
        }
        return found
    }
}
