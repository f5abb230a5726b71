/// One stored NVFP4 matrix `[N, K]`: packed e2m1 pairs `[N, K/2]` and e4m3 block scales in a
/// ``ScaleLayout``. A 2-D module is one; a stacked `[E, N, K]` module is `E` of them, back to back.
///
/// This is the one NVFP4 decoder of the read side (`dequantize`, `verify`).
public struct NVFP4Matrix: Sendable, Equatable {
    /// Rows (N) and columns (K).
    public var rows: Int
    public var columns: Int
    /// How the block scales are stored.
    public var scaleLayout: ScaleLayout

    public init(rows: Int, columns: Int, scaleLayout: ScaleLayout) {
        self.rows = rows
        self.columns = columns
        self.scaleLayout = scaleLayout
    }

    /// Blocks of 16 per row.
    public var blocks: Int { columns / 16 }
    /// Packed bytes of the matrix.
    public var packedByteCount: Int { rows * columns / 2 }
    /// Stored block-scale bytes of the matrix (swizzled padding included).
    public var scaleByteCount: Int { scaleLayout.storedByteCount(rows: rows, blocks: blocks) }

    /// Invalid block-scale codes in the stored (non-padding) region: NaN (`0x7F`/`0xFF`) or negative.
    public func invalidScaleCodes(_ scaleBytes: UnsafeRawBufferPointer) -> (count: Int, first: (row: Int, block: Int)?) {
        var count = 0
        var first: (Int, Int)?
        for row in 0..<rows {
            for block in 0..<blocks {
                let code = scaleBytes[scaleLayout.offset(row: row, block: block, blocks: blocks)]
                if E4M3.isNaN(code) || code & 0x80 != 0 {
                    count += 1
                    if first == nil { first = (row, block) }
                }
            }
        }
        return (count, first)
    }

    /// Dequantizes rows into fp32 values: e2m1 code × (per-tensor scale × e4m3 block scale), exactly
    /// as torchao's `NVFP4Tensor.dequantize` before its final cast.
    ///
    /// - Parameters:
    ///   - packed: The matrix's `[N, K/2]` packed data.
    ///   - scaleBytes: The matrix's stored scales.
    ///   - perTensorScale: The per-tensor scale (`amax / 2688`), or `nil` for single-level.
    ///   - rows: Rows to produce.
    ///   - body: Called per row with its K values.
    public func dequantize(
        packed: UnsafeRawBufferPointer, scaleBytes: UnsafeRawBufferPointer, perTensorScale: Float?,
        rows: Range<Int>, _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void
    ) rethrows {
        let rowValues = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
        defer { rowValues.deallocate() }
        for row in rows {
            for block in 0..<blocks {
                let code = scaleBytes[scaleLayout.offset(row: row, block: block, blocks: blocks)]
                let s = E4M3.decode(code)
                let factor = perTensorScale.map { $0 * s } ?? s
                for j in 0..<8 {
                    let byte = packed[row * (columns / 2) + block * 8 + j]
                    rowValues[block * 16 + 2 * j] = E2M1.values[Int(byte & 0x0F)] * factor
                    rowValues[block * 16 + 2 * j + 1] = E2M1.values[Int(byte >> 4)] * factor
                }
            }
            try body(row, UnsafeBufferPointer(rowValues))
        }
    }
}

/// A stored tensor set that looks like an NVFP4 weight but cannot be one.
public struct LayoutProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var tensor: String
    public var reason: String
    public init(tensor: String, reason: String) {
        self.tensor = tensor
        self.reason = reason
    }
    public var description: String { "tensor \"\(tensor)\": \(reason)" }
}
