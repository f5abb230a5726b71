/// How block scales are laid out in a file.
public enum ScaleLayout: String, Sendable {
    /// `[N, K/16]` row-major (compressed-tensors, ModelOpt).
    case rowMajor = "row-major"
    /// cuBLAS's 128×4-tile block-scaling layout that torchao stores (`to_blocked`), zero-padded to
    /// `[ceil(N/128)*32, ceil(K/64)*16]`.
    case swizzled = "swizzled-128x4"

    /// The stored shape for an `[rows, blocks]` scale matrix.
    public func storedShape(rows: Int, blocks: Int) -> [Int] {
        switch self {
        case .rowMajor: return [rows, blocks]
        case .swizzled: return [ceilDiv(rows, 128) * 32, ceilDiv(blocks, 4) * 16]
        }
    }

    /// The stored byte count for an `[rows, blocks]` scale matrix.
    public func storedByteCount(rows: Int, blocks: Int) -> Int { storedShape(rows: rows, blocks: blocks).reduce(1, *) }

    /// Where scale `(row, block)` lives in the stored bytes.
    @inline(__always)
    public func offset(row: Int, block: Int, blocks: Int) -> Int {
        switch self {
        case .rowMajor:
            return row * blocks + block
        case .swizzled:
            let columnBlocks = ceilDiv(blocks, 4)
            return ((row >> 7) * columnBlocks + (block >> 2)) * 512 + (row & 31) * 16 + ((row & 127) >> 5) * 4 + (block & 3)
        }
    }

    /// Stores `count` scale codes of one row, blocks `firstBlock ..< firstBlock + count`, at their
    /// offsets in `scales` (no division per block: the row's part of the offset is computed once).
    @inline(__always)
    func storeRow(_ codes: UnsafePointer<UInt8>, count: Int, row: Int, firstBlock: Int, blocks: Int, into scales: UnsafeMutableRawPointer) {
        switch self {
        case .rowMajor:
            (scales + row * blocks + firstBlock).copyMemory(from: codes, byteCount: count)
        case .swizzled:
            let rowPart = (row >> 7) * ceilDiv(blocks, 4) * 512 + (row & 31) * 16 + ((row & 127) >> 5) * 4
            var k = 0
            if firstBlock & 3 == 0 {
                // Four consecutive blocks from a multiple of 4 are four adjacent bytes of a tile.
                while k + 4 <= count {
                    let four = UnsafeRawPointer(codes + k).loadUnaligned(as: UInt32.self)
                    scales.storeBytes(of: four, toByteOffset: rowPart + ((firstBlock + k) >> 2) * 512, as: UInt32.self)
                    k += 4
                }
            }
            let out = scales.assumingMemoryBound(to: UInt8.self)
            while k < count {
                let c = firstBlock + k
                out[rowPart + (c >> 2) * 512 + (c & 3)] = codes[k]
                k += 1
            }
        }
    }

    /// Reads the `count` scale codes of one row, blocks `firstBlock ..< firstBlock + count`, from
    /// `scales` into `codes` (the inverse of ``storeRow(_:count:row:firstBlock:blocks:into:)``).
    @inline(__always)
    func loadRow(_ codes: UnsafeMutablePointer<UInt8>, count: Int, row: Int, firstBlock: Int, blocks: Int, from scales: UnsafeRawPointer) {
        switch self {
        case .rowMajor:
            UnsafeMutableRawPointer(codes).copyMemory(from: scales + row * blocks + firstBlock, byteCount: count)
        case .swizzled:
            let rowPart = (row >> 7) * ceilDiv(blocks, 4) * 512 + (row & 31) * 16 + ((row & 127) >> 5) * 4
            let stored = scales.assumingMemoryBound(to: UInt8.self)
            for k in 0..<count {
                let c = firstBlock + k
                codes[k] = stored[rowPart + (c >> 2) * 512 + (c & 3)]
            }
        }
    }
}

@inline(__always)
func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }
