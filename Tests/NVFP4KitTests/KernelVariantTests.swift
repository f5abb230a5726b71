import CNVFP4Kernel
import NVFP4Kit
import Testing

/// Every vector-width copy of the C kernel this CPU can run gives the baseline copy's bytes, scale
/// codes and error sums, bit for bit. (The copy picked at run time is the one the torchao bit-exact
/// tests check, so equality carries their exactness to every copy.)
@Suite struct KernelVariantTests {
    /// Inputs: the committed torchao case tensors, plus adversarial groups built here.
    static func inputs() throws -> [(name: String, elementBytes: Int, bytes: [UInt8])] {
        var result: [(String, Int, [UInt8])] = []
        for dtype in ["bf16", "f32"] {
            for (name, bytes) in try tensorBytes(FixturePaths.torchaoInput(dtype)).sorted(by: { $0.key < $1.key }) {
                result.append(("\(dtype) \(name)", dtype == "bf16" ? 2 : 4, bytes))
            }
        }
        // e2m1 midpoints and their neighbours, zeros of both signs, subnormals, huge values and
        // random bits (NaN and Inf excluded: the codec rejects them before the kernel).
        var rng = SystemRandomNumberGenerator()
        var special: [Float] = []
        for mid: Float in [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5] {
            for s: Float in [1, -1] { special += [mid * s, mid.nextUp * s, mid.nextDown * s] }
        }
        special += [0, -0.0, Float(bitPattern: 0x0001_16C2), Float(bitPattern: 0x8000_0001), 3e38, -3e38, 448, 6, 2688, 1e-8]
        var f32: [UInt32] = []
        for _ in 0..<(256 * 40) {
            if Bool.random(using: &rng) {
                f32.append((special.randomElement(using: &rng)! * Float(1 << Int.random(in: 0..<8, using: &rng))).bitPattern)
            } else {
                var bits = UInt32.random(in: 0...UInt32.max, using: &rng)
                if bits & 0x7F80_0000 == 0x7F80_0000 { bits &= 0xBFFF_FFFF }
                f32.append(bits)
            }
        }
        result.append(("f32 adversarial", 4, f32.withUnsafeBytes { Array($0) }))
        let bf16 = f32.map { UInt16(truncatingIfNeeded: $0 >> 16) }
        result.append(("bf16 adversarial", 2, bf16.withUnsafeBytes { Array($0) }))
        return result
    }

    struct Output: Equatable {
        var packed: [UInt8]
        var codes: [UInt8]
        var signal: [UInt64]
        var error: [UInt64]
        var maxAbs: [UInt32]
        var magnitudeMax: UInt32
        /// The comparison kernel's lanes for the same groups against the bytes just produced.
        var compared: [UInt64]
    }

    /// The first field where `a` and `b` differ, or `nil` (short, unlike the arrays themselves).
    static func difference(_ a: Output, _ b: Output) -> String? {
        func first<T: Equatable>(_ x: [T], _ y: [T]) -> Int? { x.count != y.count ? min(x.count, y.count) : x.indices.first { x[$0] != y[$0] } }
        if let i = first(a.packed, b.packed) { return "packed byte \(i)" }
        if let i = first(a.codes, b.codes) { return "scale code \(i)" }
        if let i = first(a.signal, b.signal) { return "signal lane \(i)" }
        if let i = first(a.error, b.error) { return "error lane \(i)" }
        if let i = first(a.maxAbs, b.maxAbs) { return "max-abs lane \(i)" }
        if a.magnitudeMax != b.magnitudeMax { return "magnitude maximum" }
        if let i = first(a.compared, b.compared) { return "comparison lane \(i)" }
        return nil
    }

    static func run(variant: Int32, bytes: [UInt8], elementBytes: Int, params: nvfp4_scale_params) -> Output? {
        let groups = bytes.count / elementBytes / 256
        var packed = [UInt8](repeating: 0, count: groups * 128)
        var codes = [UInt8](repeating: 0, count: groups * 16)
        var lanes = nvfp4_error_lanes()
        var magnitude: UInt32 = 0
        let status = bytes.withUnsafeBytes { source in
            packed.withUnsafeMutableBufferPointer { p in
                codes.withUnsafeMutableBufferPointer { c in
                    nvfp4_quantize_groups_variant(
                        variant, source.baseAddress, Int32(elementBytes), groups, params, p.baseAddress, c.baseAddress, &lanes)
                        + nvfp4_magnitude_max_variant(variant, source.baseAddress, Int32(elementBytes), bytes.count / elementBytes, &magnitude)
                }
            }
        }
        guard status == 0 else { return nil }
        var comparedLanes = nvfp4_error_lanes()
        let compareStatus = bytes.withUnsafeBytes { source in
            nvfp4_compare_groups_variant(variant, source.baseAddress, Int32(elementBytes), groups, packed, codes, params, &comparedLanes)
        }
        guard compareStatus == 0 else { return nil }
        func bits<T>(_ tuple: T, _ type: Double.Type) -> [UInt64] {
            withUnsafeBytes(of: tuple) { Array($0.bindMemory(to: Double.self)).map(\.bitPattern) }
        }
        return Output(
            packed: packed, codes: codes, signal: bits(lanes.signal, Double.self), error: bits(lanes.error, Double.self),
            maxAbs: withUnsafeBytes(of: lanes.max_abs) { Array($0.bindMemory(to: Float.self)).map(\.bitPattern) },
            magnitudeMax: magnitude,
            compared: bits(comparedLanes.signal, Double.self) + bits(comparedLanes.error, Double.self)
                + withUnsafeBytes(of: comparedLanes.max_abs) { Array($0.bindMemory(to: Float.self)).map { UInt64($0.bitPattern) } })
    }

    @Test func everyRunnableVariantMatchesTheBaseline() throws {
        let count = nvfp4_kernel_variant_count()
        #expect(count >= 1)
        let runnable = (0..<count).filter { nvfp4_kernel_variant_supported($0) != 0 }
        #expect(runnable.first == 0, "the baseline always runs")
        let parameterSets = [
            nvfp4_scale_params(two_level: 1, cpu_division: 0, pts: Float(bitPattern: 0x3B12_4925), rpts: 1 / Float(bitPattern: 0x3B12_4925)),
            nvfp4_scale_params(two_level: 1, cpu_division: 1, pts: 0.0123, rpts: 1 / 0.0123),
            nvfp4_scale_params(two_level: 0, cpu_division: 0, pts: 1, rpts: 1),
            nvfp4_scale_params(two_level: 0, cpu_division: 1, pts: 1, rpts: 1),
        ]
        var compared = 0
        for input in try Self.inputs() where input.bytes.count >= 256 * input.elementBytes {
            for params in parameterSets {
                let baseline = try #require(Self.run(variant: 0, bytes: input.bytes, elementBytes: input.elementBytes, params: params))
                #expect(baseline.codes.contains { $0 != 0 }, "\(input.name): the kernel wrote scale codes")
                #expect(Array(baseline.compared[0..<16]) == baseline.signal, "\(input.name): comparing reproduces the quantizer's signal lanes")
                #expect(Array(baseline.compared[16..<32]) == baseline.error, "\(input.name): comparing reproduces the quantizer's error lanes")
                #expect(Array(baseline.compared[32..<48]) == baseline.maxAbs.map(UInt64.init), "\(input.name): and its max-abs lanes")
                for variant in runnable.dropFirst() {
                    let name = String(cString: nvfp4_kernel_variant_name(variant))
                    let other = Self.run(variant: variant, bytes: input.bytes, elementBytes: input.elementBytes, params: params)
                    #expect(other.map { Self.difference($0, baseline) } == .some(nil), "\(name) differs from the baseline on \(input.name)")
                    compared += 1
                }
            }
        }
        // On a machine with only the baseline there is nothing to compare; say so rather than pass silently.
        if runnable.count > 1 { #expect(compared > 0) } else { print("KernelVariantTests: only the baseline runs on this CPU") }
    }

    @Test func unsupportedVariantsAreRefused() {
        var lanes = nvfp4_error_lanes()
        #expect(nvfp4_quantize_groups_variant(-1, nil, 2, 0, nvfp4_scale_params(), nil, nil, &lanes) == -1)
        #expect(nvfp4_quantize_groups_variant(nvfp4_kernel_variant_count(), nil, 2, 0, nvfp4_scale_params(), nil, nil, &lanes) == -1)
        #expect(nvfp4_kernel_variant_name(nvfp4_kernel_variant_count()) == nil)
    }
}
