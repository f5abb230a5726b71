// Single-threaded throughput of the NVFP4 codec on a seeded synthetic matrix.
//
//     swift run -c release nvfp4-codec-bench [rows] [columns] [runs]
//
// Prints the median (and min) G elements/s of `DenseMatrix.magnitudeMaximum()` and
// `NVFP4Codec.quantize` for bf16 and f32 input, two-level and single-level, both layouts; then
// the same values as block FP8: the amax, the dequantization and the codec behind it.
import Glibc
import NVFP4Kit

/// SplitMix64: a fixed seed gives the same matrix everywhere.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Roughly normal: sum of uniforms, with a per-row scale spread over a few octaves.
    mutating func gaussian() -> Float {
        var s: Float = 0
        for _ in 0..<4 { s += Float(next() >> 40) / Float(1 << 24) }
        return (s - 2) * 1.7
    }
}

func now(_ clock: clockid_t = CLOCK_MONOTONIC) -> Double {
    var t = timespec()
    clock_gettime(clock, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// `value` with three decimals.
func fixed(_ value: Double) -> String {
    let scaled = Int((value * 1000).rounded())
    let frac = String(scaled % 1000)
    return "\(scaled / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
}

func measure(_ label: String, elements: Int, runs: Int, _ body: () -> Void) {
    body()  // warm-up
    body()
    var times: [Double] = []
    var cpuTimes: [Double] = []
    for _ in 0..<runs {
        let t0 = now()
        let c0 = now(CLOCK_THREAD_CPUTIME_ID)
        body()
        cpuTimes.append(now(CLOCK_THREAD_CPUTIME_ID) - c0)
        times.append(now() - t0)
    }
    times.sort()
    cpuTimes.sort()
    let median = times[times.count / 2]
    let g = Double(elements) / median / 1e9
    let best = Double(elements) / times[0] / 1e9
    // Thread CPU time: steadier than wall time when other processes share the cores.
    let cpu = Double(elements) / cpuTimes[cpuTimes.count / 2] / 1e9
    let padded = label + String(repeating: " ", count: max(1, 44 - label.count))
    print("\(padded)median \(fixed(median * 1e3)) ms  \(fixed(g)) G/s  (best \(fixed(best)) G/s, per CPU-second \(fixed(cpu)) G/s)")
}

let args = CommandLine.arguments
let rows = args.count > 1 ? Int(args[1])! : 4096
let columns = args.count > 2 ? Int(args[2])! : 4096
let runs = args.count > 3 ? Int(args[3])! : 7
let count = rows * columns

var rng = SplitMix64(state: 0x5EED)
var values = [Float](repeating: 0, count: count)
for r in 0..<rows {
    let rowScale = Float(1 << (r % 5)) * 0.01
    for c in 0..<columns { values[r * columns + c] = rng.gaussian() * rowScale }
}
var bf16 = [UInt16](repeating: 0, count: count)
for i in 0..<count { bf16[i] = BFloat16.fromFloat(values[i]) }
var f32 = [UInt32](repeating: 0, count: count)
for i in 0..<count { f32[i] = BFloat16.toFloat(bf16[i]).bitPattern }

print("matrix \(rows)x\(columns), \(runs) timed runs after 2 warm-ups, single thread")
var checksum: UInt64 = 0
for (dtype, name) in [(DType.bf16, "bf16"), (.f32, "f32")] {
    let bytes: UnsafeRawBufferPointer = dtype == .bf16
        ? UnsafeRawBufferPointer(bf16.withUnsafeBytes { $0 })
        : UnsafeRawBufferPointer(f32.withUnsafeBytes { $0 })
    let matrix = DenseMatrix(bytes: bytes, dtype: dtype, rows: rows, columns: columns)
    var amax: Float = 0
    measure("\(name) magnitudeMaximum", elements: count, runs: runs) { amax = matrix.magnitudeMaximum().amax }
    let blocks = columns / 16
    for (mode, layout) in [(ScalingMode.twoLevel, ScaleLayout.swizzled), (.singleLevel, .rowMajor)] {
        for numerics in [DivisionNumerics.cpu, .cuda] where mode == .twoLevel || numerics == .cpu {
            let scale = try! TensorScale(amax: amax, mode: mode, numerics: numerics, tensor: "t")
            let codec = NVFP4Codec(scale: scale, numerics: numerics)
            let packed = UnsafeMutableRawBufferPointer.allocate(byteCount: count / 2, alignment: 64)
            let scales = UnsafeMutableRawBufferPointer.allocate(byteCount: layout.storedByteCount(rows: rows, blocks: blocks), alignment: 64)
            scales.initializeMemory(as: UInt8.self, repeating: 0)
            var error = QuantizationError()
            // Chunks of 128 rows, as QuantizeJob hands them over.
            measure("\(name) quantize \(mode.rawValue) \(numerics.rawValue) \(layout.rawValue)", elements: count, runs: runs) {
                error = QuantizationError()
                var row = 0
                while row < rows {
                    let r = row..<min(rows, row + 128)
                    codec.quantize(matrix, rows: r, packed: UnsafeMutableRawBufferPointer(rebasing: packed[(row * columns / 2)...]),
                                   scales: scales, layout: layout, error: &error)
                    row = r.upperBound
                }
            }
            var h: UInt64 = 0xCBF2_9CE4_8422_2325
            for b in packed { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
            for b in scales { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
            checksum ^= h
            print("    fnv1a=\(String(h, radix: 16)) signal=\(error.signalSquareSum) err=\(error.errorSquareSum) max=\(error.maxAbsoluteError) n=\(error.count)")
            packed.deallocate()
            scales.deallocate()
        }
    }
}
// The same values as block FP8 (128 x 128, F32 scales of blockAmax / 448), read as the quantizer
// reads FP8 input: the amax from the codes, then 128-row chunks dequantized and quantized, through
// the dequantizer (one call a scale block, bf16) and through codecRows (one call a chunk).
do {
    let (gridRows, gridColumns) = ((rows + 127) / 128, (columns + 127) / 128)
    var fp8Scales = [Float](repeating: 0, count: gridRows * gridColumns)
    for r in 0..<rows {
        for c in 0..<columns {
            let g = (r / 128) * gridColumns + c / 128
            fp8Scales[g] = max(fp8Scales[g], abs(values[r * columns + c]) / E4M3.max)
        }
    }
    let codes = (0..<count).map { i -> UInt8 in
        let s = fp8Scales[(i / columns / 128) * gridColumns + (i % columns) / 128]
        return s > 0 ? E4M3.encodeClamped(values[i] / s) : 0
    }
    // Held for the whole run (an array's storage may go once it is no longer used).
    let held = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
    held.copyBytes(from: codes)
    defer { held.deallocate() }
    let fp8Bytes = UnsafeRawBufferPointer(held)
    let fp8 = FP8Matrix(codes: fp8Bytes, rows: rows, columns: columns, scales: fp8Scales, scaling: FP8Scaling(blockRows: 128, blockColumns: 128, target: .bf16))
    var amax: Float = 0
    measure("fp8 magnitudeMaximum (codes)", elements: count, runs: runs) { amax = fp8.magnitudeMaximum(threads: 1) }
    let codec = NVFP4Codec(scale: try! TensorScale(amax: amax, mode: .twoLevel, numerics: .cuda, tensor: "t"), numerics: .cuda)
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: fp8.codecByteCount(rows: 128), alignment: 64)
    let packed = UnsafeMutableRawBufferPointer.allocate(byteCount: count / 2, alignment: 64)
    let scales = UnsafeMutableRawBufferPointer.allocate(byteCount: ScaleLayout.swizzled.storedByteCount(rows: rows, blocks: columns / 16), alignment: 64)
    scales.initializeMemory(as: UInt8.self, repeating: 0)
    for fused in [false, true] {
        let label = fused ? "one kernel call a chunk (codecRows)" : "the dequantizer (block by block)"
        measure("fp8 dequantize via \(label)", elements: count, runs: runs) {
            for row in stride(from: 0, to: rows, by: 128) {
                let r = row..<min(rows, row + 128)
                _ = fused ? fp8.codecRows(r, into: chunk) : fp8.dequantize(r, into: chunk)
            }
        }
        var error = QuantizationError()
        measure("fp8 quantize two-level cuda swizzled via \(label)", elements: count, runs: runs) {
            error = QuantizationError()
            for row in stride(from: 0, to: rows, by: 128) {
                let r = row..<min(rows, row + 128)
                let dense = fused ? fp8.codecRows(r, into: chunk) : fp8.dequantize(r, into: chunk)
                let offset = ScaleLayout.swizzled.storedByteCount(rows: row, blocks: columns / 16)
                codec.quantize(dense, rows: 0..<r.count, packed: UnsafeMutableRawBufferPointer(rebasing: packed[(row * columns / 2)...]),
                               scales: UnsafeMutableRawBufferPointer(rebasing: scales[offset...]), layout: .swizzled, error: &error)
            }
        }
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in packed { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        for b in scales { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        print("    fnv1a=\(String(h, radix: 16)) err=\(error.errorSquareSum) (the same both ways)")
    }
    chunk.deallocate()
    packed.deallocate()
    scales.deallocate()
}
print("checksum \(String(checksum, radix: 16))")
